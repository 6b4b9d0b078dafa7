package metrics

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"time"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/storage"
)

// expected are the errors that answer a question rather than report a
// failure: they are not counted as storage errors.
var expected = []error{
	storage.ErrUnknownCommand, storage.ErrDuplicateCommand, storage.ErrUnknownEnrollment,
	storage.ErrNoPushCert, storage.ErrInvalidCheckOut, storage.ErrBadCursor,
	mdm.ErrInvalidID, mdm.ErrInvalidEnrollment, mdm.ErrInvalidCommand,
	context.Canceled,
}

// isFailure reports whether err is a storage failure worth counting.
func isFailure(err error) bool {
	if err == nil {
		return false
	}
	for _, e := range expected {
		if errors.Is(err, e) {
			return false
		}
	}
	return true
}

// instrumented times every call of next by method and counts its
// failures.
type instrumented struct {
	next storage.AllStorage
	m    *Metrics
}

// Storage returns next with every call timed and every failure counted,
// by method name.
func (m *Metrics) Storage(next storage.AllStorage) storage.AllStorage {
	return &instrumented{next: next, m: m}
}

// done records one call of op that started at start.
func (s *instrumented) done(op string, start time.Time, err error) {
	s.m.storageSeconds.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if isFailure(err) {
		s.m.storageErrors.WithLabelValues(op).Inc()
	}
}

func (s *instrumented) StoreAuthenticate(r *mdm.Request, msg *mdm.Authenticate) error {
	start := time.Now()
	err := s.next.StoreAuthenticate(r, msg)
	s.done("StoreAuthenticate", start, err)
	return err
}

func (s *instrumented) StoreTokenUpdate(r *mdm.Request, msg *mdm.TokenUpdate) error {
	start := time.Now()
	err := s.next.StoreTokenUpdate(r, msg)
	s.done("StoreTokenUpdate", start, err)
	return err
}

func (s *instrumented) StoreUserAuthenticate(r *mdm.Request, msg *mdm.UserAuthenticate) error {
	start := time.Now()
	err := s.next.StoreUserAuthenticate(r, msg)
	s.done("StoreUserAuthenticate", start, err)
	return err
}

func (s *instrumented) Disable(r *mdm.Request) error {
	start := time.Now()
	err := s.next.Disable(r)
	s.done("Disable", start, err)
	return err
}

func (s *instrumented) StoreCommandReport(r *mdm.Request, report *mdm.CommandResults) error {
	start := time.Now()
	err := s.next.StoreCommandReport(r, report)
	s.done("StoreCommandReport", start, err)
	return err
}

func (s *instrumented) RetrieveNextCommand(r *mdm.Request, skipNotNow bool) (*mdm.Command, error) {
	start := time.Now()
	v, err := s.next.RetrieveNextCommand(r, skipNotNow)
	s.done("RetrieveNextCommand", start, err)
	return v, err
}

func (s *instrumented) ClearQueue(r *mdm.Request) error {
	start := time.Now()
	err := s.next.ClearQueue(r)
	s.done("ClearQueue", start, err)
	return err
}

func (s *instrumented) EnqueueCommand(ctx context.Context, ids []string, cmd *mdm.Command) (map[string]error, error) {
	start := time.Now()
	v, err := s.next.EnqueueCommand(ctx, ids, cmd)
	s.done("EnqueueCommand", start, err)
	if err == nil {
		s.m.enqueued.Add(float64(queuedCount(ids, v)))
	}
	return v, err
}

func (s *instrumented) StoreBootstrapToken(r *mdm.Request, msg *mdm.SetBootstrapToken) error {
	start := time.Now()
	err := s.next.StoreBootstrapToken(r, msg)
	s.done("StoreBootstrapToken", start, err)
	return err
}

func (s *instrumented) RetrieveBootstrapToken(r *mdm.Request, msg *mdm.GetBootstrapToken) (*mdm.BootstrapToken, error) {
	start := time.Now()
	v, err := s.next.RetrieveBootstrapToken(r, msg)
	s.done("RetrieveBootstrapToken", start, err)
	return v, err
}

func (s *instrumented) RetrieveTokenUpdateTally(ctx context.Context, id string) (int, error) {
	start := time.Now()
	v, err := s.next.RetrieveTokenUpdateTally(ctx, id)
	s.done("RetrieveTokenUpdateTally", start, err)
	return v, err
}

func (s *instrumented) RetrievePushInfo(ctx context.Context, ids []string) (map[string]*mdm.Push, error) {
	start := time.Now()
	v, err := s.next.RetrievePushInfo(ctx, ids)
	s.done("RetrievePushInfo", start, err)
	return v, err
}

func (s *instrumented) StorePushCert(ctx context.Context, pemCert, pemKey []byte) error {
	start := time.Now()
	err := s.next.StorePushCert(ctx, pemCert, pemKey)
	s.done("StorePushCert", start, err)
	return err
}

func (s *instrumented) RetrievePushCert(ctx context.Context, topic string) (*tls.Certificate, string, error) {
	start := time.Now()
	v0, v1, err := s.next.RetrievePushCert(ctx, topic)
	s.done("RetrievePushCert", start, err)
	return v0, v1, err
}

func (s *instrumented) IsPushCertStale(ctx context.Context, topic, staleToken string) (bool, error) {
	start := time.Now()
	v, err := s.next.IsPushCertStale(ctx, topic, staleToken)
	s.done("IsPushCertStale", start, err)
	return v, err
}

func (s *instrumented) RetrievePushCertTopics(ctx context.Context) ([]string, error) {
	start := time.Now()
	topics, err := s.next.RetrievePushCertTopics(ctx)
	s.done("RetrievePushCertTopics", start, err)
	return topics, err
}

func (s *instrumented) HasCertHash(r *mdm.Request, hash string) (bool, error) {
	start := time.Now()
	v, err := s.next.HasCertHash(r, hash)
	s.done("HasCertHash", start, err)
	return v, err
}

func (s *instrumented) EnrollmentHasCertHash(r *mdm.Request, hash string) (bool, error) {
	start := time.Now()
	v, err := s.next.EnrollmentHasCertHash(r, hash)
	s.done("EnrollmentHasCertHash", start, err)
	return v, err
}

func (s *instrumented) IsCertHashAssociated(r *mdm.Request, hash string) (bool, error) {
	start := time.Now()
	v, err := s.next.IsCertHashAssociated(r, hash)
	s.done("IsCertHashAssociated", start, err)
	return v, err
}

func (s *instrumented) AssociateCertHash(r *mdm.Request, hash string, certNotAfter time.Time) error {
	start := time.Now()
	err := s.next.AssociateCertHash(r, hash, certNotAfter)
	s.done("AssociateCertHash", start, err)
	return err
}

func (s *instrumented) RetrieveMigrationCheckins(ctx context.Context, c chan<- any) error {
	start := time.Now()
	err := s.next.RetrieveMigrationCheckins(ctx, c)
	s.done("RetrieveMigrationCheckins", start, err)
	return err
}

func (s *instrumented) RetrieveEnrollments(ctx context.Context, q *storage.EnrollmentQuery) ([]storage.Enrollment, error) {
	start := time.Now()
	v, err := s.next.RetrieveEnrollments(ctx, q)
	s.done("RetrieveEnrollments", start, err)
	return v, err
}

func (s *instrumented) RetrieveQueue(ctx context.Context, id, cursor string, limit int) ([]storage.QueuedCommand, error) {
	start := time.Now()
	v, err := s.next.RetrieveQueue(ctx, id, cursor, limit)
	s.done("RetrieveQueue", start, err)
	return v, err
}

func (s *instrumented) RetrieveCommandResults(ctx context.Context, uuid, after string, limit int, statusOnly bool) ([]storage.CommandResult, error) {
	start := time.Now()
	v, err := s.next.RetrieveCommandResults(ctx, uuid, after, limit, statusOnly)
	s.done("RetrieveCommandResults", start, err)
	return v, err
}

func (s *instrumented) RetrieveFleetCounts(ctx context.Context, now time.Time) (*storage.FleetCounts, error) {
	start := time.Now()
	v, err := s.next.RetrieveFleetCounts(ctx, now)
	s.done("RetrieveFleetCounts", start, err)
	return v, err
}

func (s *instrumented) RetrieveIdentityCert(ctx context.Context, id string) (*x509.Certificate, error) {
	start := time.Now()
	v, err := s.next.RetrieveIdentityCert(ctx, id)
	s.done("RetrieveIdentityCert", start, err)
	return v, err
}

func (s *instrumented) RetrieveRecentResults(ctx context.Context, id string, n int) ([]storage.RecentResult, error) {
	start := time.Now()
	v, err := s.next.RetrieveRecentResults(ctx, id, n)
	s.done("RetrieveRecentResults", start, err)
	return v, err
}

func (s *instrumented) RemoveQueuedCommand(ctx context.Context, id, uuid string) error {
	start := time.Now()
	err := s.next.RemoveQueuedCommand(ctx, id, uuid)
	s.done("RemoveQueuedCommand", start, err)
	return err
}

func (s *instrumented) RetrieveEnrollmentIDByCertHash(ctx context.Context, hash string) (string, error) {
	start := time.Now()
	v, err := s.next.RetrieveEnrollmentIDByCertHash(ctx, hash)
	s.done("RetrieveEnrollmentIDByCertHash", start, err)
	return v, err
}

func (s *instrumented) Ping(ctx context.Context) error {
	start := time.Now()
	err := s.next.Ping(ctx)
	s.done("Ping", start, err)
	return err
}

// queuedCount is how many distinct IDs of ids an enqueue queued the
// command for: those without a per-ID error.
func queuedCount(ids []string, errs map[string]error) int {
	seen := make(map[string]bool, len(ids))
	n := 0
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			if errs[id] == nil {
				n++
			}
		}
	}
	return n
}

var _ storage.AllStorage = (*instrumented)(nil)
