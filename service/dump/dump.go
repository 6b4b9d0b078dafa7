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

// Checkin implements service.Checkin: it dumps the message, then the
// answer, or the body of a *service.StatusError (a DM server's non-200
// answer reaches the device too).
func (s *Service) Checkin(r *mdm.Request, msg any) ([]byte, error) {
	s.Dump(mdm.RawOf(msg))
	b, err := s.next.Checkin(r, msg)
	s.Dump(b)
	var se *service.StatusError
	if errors.As(err, &se) {
		s.Dump(se.Body)
	}
	return b, err
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
