package allmulti

import (
	"context"
	"crypto/x509"
	"time"

	"github.com/nanomdm/nanomdm/storage"
)

// Ping implements storage.Pinger: the first backend answers every read,
// so it alone decides readiness; the others' failures only reach the log
// when they refuse writes.
func (s *Storage) Ping(ctx context.Context) error {
	return s.stores[0].Ping(ctx)
}

// RetrieveEnrollmentIDByCertHash implements storage.CertAuthRetriever
// (first backend).
func (s *Storage) RetrieveEnrollmentIDByCertHash(ctx context.Context, hash string) (string, error) {
	return s.stores[0].RetrieveEnrollmentIDByCertHash(ctx, hash)
}

// RetrieveEnrollments implements storage.EnrollmentLister (first
// backend).
func (s *Storage) RetrieveEnrollments(ctx context.Context, q *storage.EnrollmentQuery) ([]storage.Enrollment, error) {
	return s.stores[0].RetrieveEnrollments(ctx, q)
}

// RetrieveQueue implements storage.QueueLister (first backend).
func (s *Storage) RetrieveQueue(ctx context.Context, id, cursor string, limit int) ([]storage.QueuedCommand, error) {
	return s.stores[0].RetrieveQueue(ctx, id, cursor, limit)
}

// RetrieveCommandResults implements storage.CommandResultLister (first
// backend).
func (s *Storage) RetrieveCommandResults(ctx context.Context, uuid, after string, limit int, statusOnly bool) ([]storage.CommandResult, error) {
	return s.stores[0].RetrieveCommandResults(ctx, uuid, after, limit, statusOnly)
}

// RetrievePushCertTopics implements storage.PushCertLister (first
// backend).
func (s *Storage) RetrievePushCertTopics(ctx context.Context) ([]string, error) {
	return s.stores[0].RetrievePushCertTopics(ctx)
}

// RetrieveFleetCounts implements storage.FleetCounter (first backend).
func (s *Storage) RetrieveFleetCounts(ctx context.Context, now time.Time) (*storage.FleetCounts, error) {
	return s.stores[0].RetrieveFleetCounts(ctx, now)
}

// RetrieveIdentityCert implements storage.EnrollmentDetailer (first
// backend).
func (s *Storage) RetrieveIdentityCert(ctx context.Context, id string) (*x509.Certificate, error) {
	return s.stores[0].RetrieveIdentityCert(ctx, id)
}

// RetrieveRecentResults implements storage.EnrollmentDetailer (first
// backend).
func (s *Storage) RetrieveRecentResults(ctx context.Context, id string, n int) ([]storage.RecentResult, error) {
	return s.stores[0].RetrieveRecentResults(ctx, id, n)
}

// RemoveQueuedCommand implements storage.QueuedCommandRemover (every
// backend; the first one's error).
func (s *Storage) RemoveQueuedCommand(ctx context.Context, id, uuid string) error {
	return s.all(ctx, "RemoveQueuedCommand", func(o storage.AllStorage) error {
		return o.RemoveQueuedCommand(ctx, id, uuid)
	})
}
