// Package multi runs one primary MDM service and any number of secondary
// ones. The primary's answer is the device's answer; the secondaries (a
// webhook, say) see every request afterwards and their errors are logged.
package multi

import (
	"github.com/nanomdm/nanomdm/log"
	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/service"
)

// Service fans requests out to a primary and secondary services.
type Service struct {
	primary service.CheckinAndCommandService
	others  []service.CheckinAndCommandService
	logger  log.Logger
}

// New returns a Service; logger receives the secondaries' errors.
func New(logger log.Logger, primary service.CheckinAndCommandService, others ...service.CheckinAndCommandService) *Service {
	if logger == nil {
		logger = log.Nop
	}
	return &Service{primary: primary, others: others, logger: logger}
}

// runOthers calls f on each secondary with the original request, logging
// any error. It runs after the primary so the secondaries see a request
// only once the device's answer is known.
func (s *Service) runOthers(r *mdm.Request, what string, f func(svc service.CheckinAndCommandService) error) {
	for i, svc := range s.others {
		if err := f(svc); err != nil {
			log.From(r.Context, s.logger).Info("msg", "secondary service", "service", i+1, "request", what, "err", err)
		}
	}
}

// Checkin implements service.Checkin: the primary's answer is returned,
// the secondaries' answers are dropped.
func (s *Service) Checkin(r *mdm.Request, msg any) ([]byte, error) {
	b, err := s.primary.Checkin(r, msg)
	s.runOthers(r, mdm.MessageTypeOf(msg), func(svc service.CheckinAndCommandService) error {
		_, err := svc.Checkin(r, msg)
		return err
	})
	return b, err
}

// CommandAndReportResults implements service.CommandAndReportResults.
func (s *Service) CommandAndReportResults(r *mdm.Request, res *mdm.CommandResults) (*mdm.Command, error) {
	cmd, err := s.primary.CommandAndReportResults(r, res)
	s.runOthers(r, "command report", func(svc service.CheckinAndCommandService) error {
		_, err := svc.CommandAndReportResults(r, res)
		return err
	})
	return cmd, err
}
