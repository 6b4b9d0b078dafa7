package inmem

import (
	"context"
	"time"

	"github.com/nanomdm/nanomdm/storage"
)

// Append implements storage.OutboxStore. Bodies are copied.
func (s *Storage) Append(_ context.Context, events []storage.OutboxEvent) error {
	for i := range events {
		events[i].Body = clone(events[i].Body)
	}
	s.outbox.Append(events, time.Now())
	return nil
}

// Claim implements storage.OutboxStore.
func (s *Storage) Claim(_ context.Context, owner string, n int, lease time.Duration) ([]storage.OutboxEvent, error) {
	return s.outbox.Claim(owner, n, lease, time.Now()), nil
}

// Delete implements storage.OutboxStore.
func (s *Storage) Delete(_ context.Context, ids []int64) error {
	s.outbox.Delete(ids)
	return nil
}

// Release implements storage.OutboxStore.
func (s *Storage) Release(_ context.Context, owner string, ids []int64, retryAt time.Time) error {
	s.outbox.Release(owner, ids, retryAt)
	return nil
}

// Trim implements storage.OutboxStore.
func (s *Storage) Trim(_ context.Context, maxEvents int, before time.Time) (int, error) {
	return len(s.outbox.Trim(maxEvents, before)), nil
}

// OutboxStats implements storage.OutboxStore.
func (s *Storage) OutboxStats(context.Context) (storage.OutboxStats, error) {
	return s.outbox.Stats(), nil
}
