// Package dump writes every MDM request's raw plist and every non-empty
// answer (next command, digest challenge, bootstrap token, get-token
// answer, declarative management answer, including a DM server's non-200
// body) to a writer, for troubleshooting.
package dump

import (
	"errors"
	"io"
	"sync"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/service"
)

// Service wraps next and dumps what passes through it.
type Service struct {
	next service.CheckinAndCommandService
	mu   sync.Mutex
	w    io.Writer
}

// New returns a dumping Service in front of next.
func New(next service.CheckinAndCommandService, w io.Writer) *Service {
	return &Service{next: next, w: w}
}

// Dump writes b, ending it with a newline, unless it is empty. It is safe
// for concurrent use and serves requests refused before they reach the
// service (see the WithDumpRefused option of http/mdm).
func (s *Service) Dump(b []byte) {
	if len(b) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.w.Write(b)
	if b[len(b)-1] != '\n' {
		s.w.Write([]byte{'\n'})
	}
}

// Authenticate implements service.Checkin.
func (s *Service) Authenticate(r *mdm.Request, m *mdm.Authenticate) error {
	s.Dump(m.Raw)
	return s.next.Authenticate(r, m)
}

// TokenUpdate implements service.Checkin.
func (s *Service) TokenUpdate(r *mdm.Request, m *mdm.TokenUpdate) error {
	s.Dump(m.Raw)
	return s.next.TokenUpdate(r, m)
}

// CheckOut implements service.Checkin.
func (s *Service) CheckOut(r *mdm.Request, m *mdm.CheckOut) error {
	s.Dump(m.Raw)
	return s.next.CheckOut(r, m)
}

// UserAuthenticate implements service.Checkin.
func (s *Service) UserAuthenticate(r *mdm.Request, m *mdm.UserAuthenticate) ([]byte, error) {
	s.Dump(m.Raw)
	b, err := s.next.UserAuthenticate(r, m)
	s.Dump(b)
	return b, err
}

// SetBootstrapToken implements service.Checkin.
func (s *Service) SetBootstrapToken(r *mdm.Request, m *mdm.SetBootstrapToken) error {
	s.Dump(m.Raw)
	return s.next.SetBootstrapToken(r, m)
}

// GetBootstrapToken implements service.Checkin.
func (s *Service) GetBootstrapToken(r *mdm.Request, m *mdm.GetBootstrapToken) (*mdm.BootstrapToken, error) {
	s.Dump(m.Raw)
	t, err := s.next.GetBootstrapToken(r, m)
	if err == nil && t != nil {
		if b, encErr := mdm.EncodePlist(t); encErr == nil {
			s.Dump(b)
		}
	}
	return t, err
}

// DeclarativeManagement implements service.Checkin.
func (s *Service) DeclarativeManagement(r *mdm.Request, m *mdm.DeclarativeManagement) ([]byte, error) {
	s.Dump(m.Raw)
	b, err := s.next.DeclarativeManagement(r, m)
	s.Dump(b)
	// A DM server's non-200 answer reaches the device too.
	var se *service.StatusError
	if errors.As(err, &se) {
		s.Dump(se.Body)
	}
	return b, err
}

// GetToken implements service.Checkin.
func (s *Service) GetToken(r *mdm.Request, m *mdm.GetToken) (*mdm.GetTokenResponse, error) {
	s.Dump(m.Raw)
	t, err := s.next.GetToken(r, m)
	if err == nil && t != nil {
		if b, encErr := mdm.EncodePlist(t); encErr == nil {
			s.Dump(b)
		}
	}
	return t, err
}

// CommandAndReportResults implements service.CommandAndReportResults.
func (s *Service) CommandAndReportResults(r *mdm.Request, res *mdm.CommandResults) (*mdm.Command, error) {
	s.Dump(res.Raw)
	cmd, err := s.next.CommandAndReportResults(r, res)
	if cmd != nil {
		s.Dump(cmd.Raw)
	}
	return cmd, err
}
