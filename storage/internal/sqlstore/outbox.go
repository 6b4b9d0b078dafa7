package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"time"

	"github.com/nanomdm/nanomdm/storage"
)

// OutboxQueries is the SQL text of the webhook outbox. Times are Unix
// nanoseconds from the servers' clocks.
type OutboxQueries struct {
	// Insert stores :rows of (key, body, created_at).
	Insert string
	// ClaimHeads returns id, key, body, created_at of at most :n events,
	// in id order, whose lease_until is before :now and that have no
	// older event of their key, locking them and skipping rows another
	// transaction has locked (FOR UPDATE SKIP LOCKED).
	ClaimHeads string
	// Lease sets owner :owner and lease_until :until on the events :ids.
	Lease string
	// Delete deletes the events :ids.
	Delete string
	// Release sets lease_until :retry_at and clears the owner of those
	// of the events :ids that :owner holds.
	Release string
	// DeleteBefore deletes the events with created_at before :before.
	DeleteBefore string
	// NthID returns the id of the event at 0-based position :offset in
	// id order.
	NthID string
	// DeleteUpTo deletes the events with id at most :id.
	DeleteUpTo string
	// Stats returns the number of events and the smallest created_at (0
	// when empty).
	Stats string
}

// Append implements storage.OutboxStore with one multi-row insert.
func (s *Store) Append(ctx context.Context, events []storage.OutboxEvent) error {
	if len(events) == 0 {
		return nil
	}
	rows := make(Rows, len(events))
	now := time.Now()
	for i := range events {
		ev := &events[i]
		if ev.Created.IsZero() {
			ev.Created = now
		}
		if err := s.checkSize("webhook event", ev.Body); err != nil {
			return err
		}
		rows[i] = []any{ev.Key, ev.Body, ev.Created.UnixNano()}
	}
	if _, err := s.execRetry(ctx, "AppendOutbox", s.d.Outbox.Insert, Args{"rows": rows}); err != nil {
		return fmt.Errorf("appending to outbox: %w", err)
	}
	return nil
}

// Claim implements storage.OutboxStore: in one read-committed
// transaction it locks the claimable heads, skipping those another
// claimer is locking, and leases them.
func (s *Store) Claim(ctx context.Context, owner string, n int, lease time.Duration) ([]storage.OutboxEvent, error) {
	if n <= 0 {
		return nil, nil
	}
	q := &s.d.Outbox
	var out []storage.OutboxEvent
	err := s.inTxIso(ctx, "ClaimOutbox", sql.LevelReadCommitted, func(tx *sql.Tx) error {
		out = out[:0]
		now := time.Now()
		rows, err := s.query(ctx, tx, q.ClaimHeads, Args{"now": now.UnixNano(), "n": n})
		if err != nil {
			return err
		}
		defer rows.Close()
		var ids []string
		for rows.Next() {
			var ev storage.OutboxEvent
			var created int64
			if err := rows.Scan(&ev.ID, &ev.Key, &ev.Body, &created); err != nil {
				return err
			}
			ev.Created = time.Unix(0, created)
			out = append(out, ev)
			ids = append(ids, strconv.FormatInt(ev.ID, 10))
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil
		}
		_, err = s.exec(ctx, tx, q.Lease, Args{"owner": owner, "until": now.Add(lease).UnixNano(), "ids": ids})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("claiming outbox events: %w", err)
	}
	return out, nil
}

func idStrings(ids []int64) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = strconv.FormatInt(id, 10)
	}
	return out
}

// Delete implements storage.OutboxStore.
func (s *Store) Delete(ctx context.Context, ids []int64) error {
	for _, b := range batches(idStrings(ids), s.batchSize(1)) {
		if _, err := s.execRetry(ctx, "DeleteOutbox", s.d.Outbox.Delete, Args{"ids": b}); err != nil {
			return fmt.Errorf("deleting outbox events: %w", err)
		}
	}
	return nil
}

// Release implements storage.OutboxStore.
func (s *Store) Release(ctx context.Context, owner string, ids []int64, retryAt time.Time) error {
	for _, b := range batches(idStrings(ids), s.batchSize(1)) {
		args := Args{"ids": b, "owner": owner, "retry_at": retryAt.UnixNano()}
		if _, err := s.execRetry(ctx, "ReleaseOutbox", s.d.Outbox.Release, args); err != nil {
			return fmt.Errorf("releasing outbox events: %w", err)
		}
	}
	return nil
}

// Trim implements storage.OutboxStore.
func (s *Store) Trim(ctx context.Context, maxEvents int, before time.Time) (int, error) {
	q := &s.d.Outbox
	var dropped int64
	if !before.IsZero() {
		n, err := s.execRetry(ctx, "TrimOutboxAge", q.DeleteBefore, Args{"before": before.UnixNano()})
		if err != nil {
			return 0, fmt.Errorf("trimming outbox by age: %w", err)
		}
		dropped += n
	}
	if maxEvents > 0 {
		st, err := s.OutboxStats(ctx)
		if err != nil {
			return int(dropped), err
		}
		if excess := st.Depth - maxEvents; excess > 0 {
			var cut int64
			ok, err := s.scanOne(ctx, s.db, q.NthID, Args{"offset": excess - 1}, &cut)
			if err != nil {
				return int(dropped), fmt.Errorf("trimming outbox by size: %w", err)
			}
			if ok {
				n, err := s.execRetry(ctx, "TrimOutboxSize", q.DeleteUpTo, Args{"id": cut})
				if err != nil {
					return int(dropped), fmt.Errorf("trimming outbox by size: %w", err)
				}
				dropped += n
			}
		}
	}
	return int(dropped), nil
}

// OutboxStats implements storage.OutboxStore.
func (s *Store) OutboxStats(ctx context.Context) (storage.OutboxStats, error) {
	var st storage.OutboxStats
	var oldest int64
	if _, err := s.scanOne(ctx, s.db, s.d.Outbox.Stats, Args{}, &st.Depth, &oldest); err != nil {
		return st, fmt.Errorf("reading outbox stats: %w", err)
	}
	if oldest != 0 {
		st.Oldest = time.Unix(0, oldest)
	}
	return st, nil
}
