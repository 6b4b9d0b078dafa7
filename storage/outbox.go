package storage

import (
	"context"
	"time"
)

// OutboxEvent is one webhook event waiting in the outbox for delivery.
type OutboxEvent struct {
	// ID is given by the store (Append ignores it; Claim returns it):
	// unique in the store and increasing in append order (events appended
	// at the same instant by different servers may get IDs in either
	// order).
	ID int64
	// Key groups the events that must be delivered in order: the
	// device-channel ID of the enrollment the event is about.
	Key string
	// Body is the event as it is posted, unchanged by the store.
	Body []byte
	// Created is when the event was appended (set by Append when zero).
	Created time.Time
}

// OutboxStats describes what waits in the outbox.
type OutboxStats struct {
	// Depth counts the events in the outbox, leased ones included.
	Depth int
	// Oldest is the Created time of the oldest event; zero when empty.
	Oldest time.Time
}

// OutboxStore keeps webhook events durably until they are delivered, so
// that a crash, a restart or an endpoint outage loses none (at least once
// delivery). Several servers sharing a backend share its outbox.
//
// Events of one key are handed out one at a time, oldest first: Claim
// returns an event only when no older event of its key is still in the
// outbox, so deliverers that delete an event once it is delivered keep
// each key's order however many servers claim at once.
type OutboxStore interface {
	// Append stores events, in order, setting Created when zero. An
	// empty slice stores nothing.
	Append(ctx context.Context, events []OutboxEvent) error

	// Claim returns at most n events in ID order, at most one per key:
	// the oldest event of its key, when it is not leased. It leases each
	// returned event to owner for lease: no Claim returns it again, on
	// this server or another, until the lease ends (or Release ends it).
	// An outbox with nothing to hand out gives an empty result.
	Claim(ctx context.Context, owner string, n int, lease time.Duration) ([]OutboxEvent, error)

	// Delete removes delivered events. Unknown IDs (already deleted or
	// trimmed) are ignored.
	Delete(ctx context.Context, ids []int64) error

	// Release ends the lease of owner on events it could not deliver:
	// they can be claimed again from retryAt on (a retryAt in the past
	// frees them at once). Events owner no longer leases are left alone.
	Release(ctx context.Context, owner string, ids []int64, retryAt time.Time) error

	// Trim drops the events created before before (zero: none by age),
	// then the oldest ones beyond maxEvents (0 or less: no bound), leased
	// or not, and returns how many it dropped.
	Trim(ctx context.Context, maxEvents int, before time.Time) (int, error)

	// OutboxStats returns the depth of the outbox and its oldest event's
	// time.
	OutboxStats(ctx context.Context) (OutboxStats, error)
}
