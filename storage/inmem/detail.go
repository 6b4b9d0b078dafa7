package inmem

import (
	"cmp"
	"context"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nanomdm/nanomdm/storage"
)

// RetrieveIdentityCert implements storage.EnrollmentDetailer.
func (s *Storage) RetrieveIdentityCert(ctx context.Context, id string) (*x509.Certificate, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	deviceID, _, _ := strings.Cut(id, ":")
	s.mu.RLock()
	var der []byte
	if e := s.enrollments[deviceID]; e != nil {
		der = e.identityCert // replaced, never changed in place
	}
	s.mu.RUnlock()
	if der == nil {
		return nil, nil
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing identity certificate of %s: %w", deviceID, err)
	}
	return cert, nil
}

// RetrieveRecentResults implements storage.EnrollmentDetailer. It looks
// through every stored result: fine for test-sized stores.
func (s *Storage) RetrieveRecentResults(ctx context.Context, id string, n int) ([]storage.RecentResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []storage.RecentResult
	for k, r := range s.results {
		if k.id != id {
			continue
		}
		rr := storage.RecentResult{CommandUUID: k.uuid, Status: r.status, At: r.at.Round(0).Truncate(time.Microsecond), Raw: clone(r.raw)}
		if c := s.commands[k.uuid]; c != nil {
			rr.RequestType = c.Command.RequestType
		}
		out = append(out, rr)
	}
	slices.SortFunc(out, func(a, b storage.RecentResult) int {
		return cmp.Or(b.At.Compare(a.At), strings.Compare(a.CommandUUID, b.CommandUUID))
	})
	if n <= 0 {
		n = storage.DefaultInspectLimit
	}
	return out[:min(len(out), n)], nil
}

// RemoveQueuedCommand implements storage.QueuedCommandRemover.
func (s *Storage) RemoveQueuedCommand(ctx context.Context, id, uuid string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.enrollments[id]
	if e == nil || e.push == nil {
		return fmt.Errorf("%w: %q", storage.ErrUnknownEnrollment, id)
	}
	i := indexOf(e.queue, uuid)
	if i < 0 {
		return fmt.Errorf("%w: %q", storage.ErrUnknownCommand, uuid)
	}
	e.queue = append(e.queue[:i:i], e.queue[i+1:]...)
	return nil
}
