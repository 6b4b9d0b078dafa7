package metrics

import (
	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/service"
	"time"
)

// serviceLink counts what passes through it to the next service.
type serviceLink struct {
	next service.CheckinAndCommandService
	m    *Metrics
}

// Service returns a service link that counts check-ins by message type,
// command reports by status and the commands next answers reports with,
// then hands every request to next unchanged. Put it first in the chain
// to count everything devices send.
func (m *Metrics) Service(next service.CheckinAndCommandService) service.CheckinAndCommandService {
	return &serviceLink{next: next, m: m}
}

func (s *serviceLink) Checkin(r *mdm.Request, msg any) ([]byte, error) {
	s.m.checkins.WithLabelValues(label(mdm.MessageTypeOf(msg), knownMessageTypes)).Inc()
	return s.next.Checkin(r, msg)
}

func (s *serviceLink) CommandAndReportResults(r *mdm.Request, results *mdm.CommandResults) (*mdm.Command, error) {
	s.m.reports.WithLabelValues(label(results.Status, knownStatuses)).Inc()
	s.m.history.add(results.Status, time.Now())
	cmd, err := s.next.CommandAndReportResults(r, results)
	if err == nil && cmd != nil {
		s.m.delivered.Inc()
	}
	return cmd, err
}
