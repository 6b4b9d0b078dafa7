package allmulti

import (
	"context"
	"time"

	"github.com/nanomdm/nanomdm/storage"
)

// The outbox is a delivery queue, not data to keep in step: it lives in
// the first backend only, which the webhook appends to and claims from.

// Append implements storage.OutboxStore on the first backend.
func (s *Storage) Append(ctx context.Context, events []storage.OutboxEvent) error {
	return s.stores[0].Append(ctx, events)
}

// Claim implements storage.OutboxStore on the first backend.
func (s *Storage) Claim(ctx context.Context, owner string, n int, lease time.Duration) ([]storage.OutboxEvent, error) {
	return s.stores[0].Claim(ctx, owner, n, lease)
}

// Delete implements storage.OutboxStore on the first backend.
func (s *Storage) Delete(ctx context.Context, ids []int64) error {
	return s.stores[0].Delete(ctx, ids)
}

// Release implements storage.OutboxStore on the first backend.
func (s *Storage) Release(ctx context.Context, owner string, ids []int64, retryAt time.Time) error {
	return s.stores[0].Release(ctx, owner, ids, retryAt)
}

// Trim implements storage.OutboxStore on the first backend.
func (s *Storage) Trim(ctx context.Context, maxEvents int, before time.Time) (int, error) {
	return s.stores[0].Trim(ctx, maxEvents, before)
}

// OutboxStats implements storage.OutboxStore on the first backend.
func (s *Storage) OutboxStats(ctx context.Context) (storage.OutboxStats, error) {
	return s.stores[0].OutboxStats(ctx)
}
