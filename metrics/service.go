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

func (s *serviceLink) checkin(messageType string) {
	s.m.checkins.WithLabelValues(messageType).Inc()
}

func (s *serviceLink) Authenticate(r *mdm.Request, msg *mdm.Authenticate) error {
	s.checkin(mdm.MessageAuthenticate)
	return s.next.Authenticate(r, msg)
}

func (s *serviceLink) TokenUpdate(r *mdm.Request, msg *mdm.TokenUpdate) error {
	s.checkin(mdm.MessageTokenUpdate)
	return s.next.TokenUpdate(r, msg)
}

func (s *serviceLink) CheckOut(r *mdm.Request, msg *mdm.CheckOut) error {
	s.checkin(mdm.MessageCheckOut)
	return s.next.CheckOut(r, msg)
}

func (s *serviceLink) UserAuthenticate(r *mdm.Request, msg *mdm.UserAuthenticate) ([]byte, error) {
	s.checkin(mdm.MessageUserAuthenticate)
	return s.next.UserAuthenticate(r, msg)
}

func (s *serviceLink) SetBootstrapToken(r *mdm.Request, msg *mdm.SetBootstrapToken) error {
	s.checkin(mdm.MessageSetBootstrapToken)
	return s.next.SetBootstrapToken(r, msg)
}

func (s *serviceLink) GetBootstrapToken(r *mdm.Request, msg *mdm.GetBootstrapToken) (*mdm.BootstrapToken, error) {
	s.checkin(mdm.MessageGetBootstrapToken)
	return s.next.GetBootstrapToken(r, msg)
}

func (s *serviceLink) DeclarativeManagement(r *mdm.Request, msg *mdm.DeclarativeManagement) ([]byte, error) {
	s.checkin(mdm.MessageDeclarativeManagement)
	return s.next.DeclarativeManagement(r, msg)
}

func (s *serviceLink) GetToken(r *mdm.Request, msg *mdm.GetToken) (*mdm.GetTokenResponse, error) {
	s.checkin(mdm.MessageGetToken)
	return s.next.GetToken(r, msg)
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
