package allmulti

import (
	"context"
	"fmt"
	"time"

	"github.com/nanomdm/nanomdm/storage"
)

// firstAs returns the first backend as role R, or an error saying what
// it cannot do.
func firstAs[R any](s *Storage, what string) (R, error) {
	r, ok := s.stores[0].(R)
	if !ok {
		return r, fmt.Errorf("allmulti: first storage backend (%T) cannot %s", s.stores[0], what)
	}
	return r, nil
}

// Ping implements storage.Pinger: the first backend answers every read,
// so it alone decides readiness; the others' failures only reach the log
// when they refuse writes.
func (s *Storage) Ping(ctx context.Context) error {
	p, err := firstAs[storage.Pinger](s, "be pinged")
	if err != nil {
		return err
	}
	return p.Ping(ctx)
}

// RetrieveEnrollmentIDByCertHash implements storage.CertAuthRetriever
// (first backend).
func (s *Storage) RetrieveEnrollmentIDByCertHash(ctx context.Context, hash string) (string, error) {
	r, err := firstAs[storage.CertAuthRetriever](s, "find enrollments by certificate hash")
	if err != nil {
		return "", err
	}
	return r.RetrieveEnrollmentIDByCertHash(ctx, hash)
}

// RetrieveEnrollments implements storage.EnrollmentLister (first
// backend).
func (s *Storage) RetrieveEnrollments(ctx context.Context, q *storage.EnrollmentQuery) ([]storage.Enrollment, error) {
	r, err := firstAs[storage.EnrollmentLister](s, "list enrollments")
	if err != nil {
		return nil, err
	}
	return r.RetrieveEnrollments(ctx, q)
}

// RetrieveQueue implements storage.QueueLister (first backend).
func (s *Storage) RetrieveQueue(ctx context.Context, id, cursor string, limit int) ([]storage.QueuedCommand, error) {
	r, err := firstAs[storage.QueueLister](s, "list queues")
	if err != nil {
		return nil, err
	}
	return r.RetrieveQueue(ctx, id, cursor, limit)
}

// RetrieveCommandResults implements storage.CommandResultLister (first
// backend).
func (s *Storage) RetrieveCommandResults(ctx context.Context, uuid, after string, limit int, statusOnly bool) ([]storage.CommandResult, error) {
	r, err := firstAs[storage.CommandResultLister](s, "list command results")
	if err != nil {
		return nil, err
	}
	return r.RetrieveCommandResults(ctx, uuid, after, limit, statusOnly)
}

var (
	_ storage.InspectionStore   = (*Storage)(nil)
	_ storage.CertAuthRetriever = (*Storage)(nil)
	_ storage.Pinger            = (*Storage)(nil)
)

// RetrieveFleetCounts implements storage.FleetCounter (first backend).
func (s *Storage) RetrieveFleetCounts(ctx context.Context, now time.Time) (*storage.FleetCounts, error) {
	r, err := firstAs[storage.FleetCounter](s, "count the fleet")
	if err != nil {
		return nil, err
	}
	return r.RetrieveFleetCounts(ctx, now)
}
