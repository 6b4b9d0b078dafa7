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

// Authenticate implements service.Checkin.
func (s *Service) Authenticate(r *mdm.Request, m *mdm.Authenticate) error {
	err := s.primary.Authenticate(r, m)
	s.runOthers(r, "authenticate", func(svc service.CheckinAndCommandService) error { return svc.Authenticate(r, m) })
	return err
}

// TokenUpdate implements service.Checkin.
func (s *Service) TokenUpdate(r *mdm.Request, m *mdm.TokenUpdate) error {
	err := s.primary.TokenUpdate(r, m)
	s.runOthers(r, "token update", func(svc service.CheckinAndCommandService) error { return svc.TokenUpdate(r, m) })
	return err
}

// CheckOut implements service.Checkin.
func (s *Service) CheckOut(r *mdm.Request, m *mdm.CheckOut) error {
	err := s.primary.CheckOut(r, m)
	s.runOthers(r, "check-out", func(svc service.CheckinAndCommandService) error { return svc.CheckOut(r, m) })
	return err
}

// UserAuthenticate implements service.Checkin.
func (s *Service) UserAuthenticate(r *mdm.Request, m *mdm.UserAuthenticate) ([]byte, error) {
	b, err := s.primary.UserAuthenticate(r, m)
	s.runOthers(r, "user authenticate", func(svc service.CheckinAndCommandService) error {
		_, err := svc.UserAuthenticate(r, m)
		return err
	})
	return b, err
}

// SetBootstrapToken implements service.Checkin.
func (s *Service) SetBootstrapToken(r *mdm.Request, m *mdm.SetBootstrapToken) error {
	err := s.primary.SetBootstrapToken(r, m)
	s.runOthers(r, "set bootstrap token", func(svc service.CheckinAndCommandService) error { return svc.SetBootstrapToken(r, m) })
	return err
}

// GetBootstrapToken implements service.Checkin.
func (s *Service) GetBootstrapToken(r *mdm.Request, m *mdm.GetBootstrapToken) (*mdm.BootstrapToken, error) {
	t, err := s.primary.GetBootstrapToken(r, m)
	s.runOthers(r, "get bootstrap token", func(svc service.CheckinAndCommandService) error {
		_, err := svc.GetBootstrapToken(r, m)
		return err
	})
	return t, err
}

// DeclarativeManagement implements service.Checkin.
func (s *Service) DeclarativeManagement(r *mdm.Request, m *mdm.DeclarativeManagement) ([]byte, error) {
	b, err := s.primary.DeclarativeManagement(r, m)
	s.runOthers(r, "declarative management", func(svc service.CheckinAndCommandService) error {
		_, err := svc.DeclarativeManagement(r, m)
		return err
	})
	return b, err
}

// GetToken implements service.Checkin.
func (s *Service) GetToken(r *mdm.Request, m *mdm.GetToken) (*mdm.GetTokenResponse, error) {
	t, err := s.primary.GetToken(r, m)
	s.runOthers(r, "get token", func(svc service.CheckinAndCommandService) error {
		_, err := svc.GetToken(r, m)
		return err
	})
	return t, err
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
