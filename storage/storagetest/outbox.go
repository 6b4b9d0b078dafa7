package storagetest

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/storage"
)

// clearOutbox empties the outbox: the SQL backends share one database
// between subtests, and the outbox is global.
func clearOutbox(t *testing.T, s storage.OutboxStore) {
	t.Helper()
	if _, err := s.Trim(context.Background(), 0, time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("clearing outbox: %v", err)
	}
}

// outboxEvent builds an event of key whose body names it and n and holds
// bytes JSON never would (a store must keep bodies byte for byte).
func outboxEvent(key string, n int) storage.OutboxEvent {
	return storage.OutboxEvent{Key: key, Body: fmt.Appendf(nil, "{\"key\":%q,\"n\":%d}\x00\n\xff", key, n)}
}

func appendEvents(t *testing.T, s storage.OutboxStore, events ...storage.OutboxEvent) {
	t.Helper()
	if err := s.Append(context.Background(), events); err != nil {
		t.Fatalf("append: %v", err)
	}
}

func claim(t *testing.T, s storage.OutboxStore, owner string, n int, lease time.Duration) []storage.OutboxEvent {
	t.Helper()
	events, err := s.Claim(context.Background(), owner, n, lease)
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	return events
}

func deleteEvents(t *testing.T, s storage.OutboxStore, events ...storage.OutboxEvent) {
	t.Helper()
	ids := make([]int64, len(events))
	for i, ev := range events {
		ids[i] = ev.ID
	}
	if err := s.Delete(context.Background(), ids); err != nil {
		t.Fatalf("delete: %v", err)
	}
}

// bodies returns the bodies of events as strings, for have/want output.
func bodies(events []storage.OutboxEvent) []string {
	out := make([]string, len(events))
	for i, ev := range events {
		out[i] = string(ev.Body)
	}
	return out
}

func checkClaim(t *testing.T, what string, have []storage.OutboxEvent, want ...storage.OutboxEvent) {
	t.Helper()
	ok := len(have) == len(want)
	for i := 0; ok && i < len(have); i++ {
		ok = have[i].Key == want[i].Key && bytes.Equal(have[i].Body, want[i].Body) && !have[i].Created.IsZero()
	}
	if !ok {
		t.Errorf("%s: have %q, want %q", what, bodies(have), bodies(want))
	}
}

// testOutboxOrder covers storage.OutboxStore: one event per key at a
// time, oldest first, keys in append order, nothing more while a key's
// head is leased, bodies unchanged, and the stats.
func testOutboxOrder(t *testing.T, s storage.AllStorage) {
	ctx := context.Background()
	clearOutbox(t, s)
	a, b := NewDevice(t).ID(), NewDevice(t).ID()
	a1, b1, a2, a3 := outboxEvent(a, 1), outboxEvent(b, 1), outboxEvent(a, 2), outboxEvent(a, 3)
	before := time.Now().Add(-time.Second)
	appendEvents(t, s, a1, b1, a2)
	appendEvents(t, s, a3)
	appendEvents(t, s)
	st, err := s.OutboxStats(ctx)
	if err != nil || st.Depth != 4 || st.Oldest.Before(before) || st.Oldest.After(time.Now().Add(time.Second)) {
		t.Errorf("stats: have %+v, %v; want depth 4, oldest about now", st, err)
	}

	first := claim(t, s, "o1", 10, time.Minute)
	checkClaim(t, "first claim", first, a1, b1)
	checkClaim(t, "claim while heads are leased", claim(t, s, "o2", 10, time.Minute))
	if len(first) == 2 && first[0].ID >= first[1].ID {
		t.Errorf("IDs not increasing in append order: %d, %d", first[0].ID, first[1].ID)
	}
	deleteEvents(t, s, first[:min(1, len(first))]...)
	second := claim(t, s, "o1", 10, time.Minute)
	checkClaim(t, "after deleting the head of one key", second, a2)
	deleteEvents(t, s, first...)
	deleteEvents(t, s, second...)
	third := claim(t, s, "o1", 10, time.Minute)
	checkClaim(t, "after deleting both", third, a3)
	deleteEvents(t, s, third...)
	checkClaim(t, "claim of an empty outbox", claim(t, s, "o1", 10, time.Minute))
	if st, err := s.OutboxStats(ctx); err != nil || st.Depth != 0 || !st.Oldest.IsZero() {
		t.Errorf("stats of an empty outbox: have %+v, %v; want zero", st, err)
	}

	// Unknown IDs and empty calls are not errors.
	if err := s.Delete(ctx, []int64{1 << 60}); err != nil {
		t.Errorf("delete unknown: %v", err)
	}
	if err := s.Release(ctx, "o1", []int64{1 << 60}, time.Now()); err != nil {
		t.Errorf("release unknown: %v", err)
	}
	if have := claim(t, s, "o1", 0, time.Minute); len(have) != 0 {
		t.Errorf("claim of 0: have %d events", len(have))
	}
}

// testOutboxLease: a lease ends by itself (the event is claimed again,
// unchanged) or by Release of its owner, at once or from a later time;
// Release by another owner changes nothing.
func testOutboxLease(t *testing.T, s storage.AllStorage) {
	ctx := context.Background()
	clearOutbox(t, s)
	ev := outboxEvent(NewDevice(t).ID(), 1)
	appendEvents(t, s, ev)

	got := claim(t, s, "o1", 5, 200*time.Millisecond)
	checkClaim(t, "claim", got, ev)
	checkClaim(t, "claim while leased", claim(t, s, "o2", 5, time.Minute))
	time.Sleep(300 * time.Millisecond)
	again := claim(t, s, "o2", 5, time.Minute)
	checkClaim(t, "claim after the lease ended", again, ev)
	if len(got) == 1 && len(again) == 1 && got[0].ID != again[0].ID {
		t.Errorf("redelivered ID: have %d, want %d", again[0].ID, got[0].ID)
	}
	if len(again) != 1 {
		return
	}
	id := []int64{again[0].ID}

	if err := s.Release(ctx, "o1", id, time.Time{}); err != nil {
		t.Fatalf("release by another owner: %v", err)
	}
	checkClaim(t, "claim after release by another owner", claim(t, s, "o3", 5, time.Minute))
	if err := s.Release(ctx, "o2", id, time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("release until later: %v", err)
	}
	checkClaim(t, "claim before the retry time", claim(t, s, "o3", 5, time.Minute))
	clearOutbox(t, s)

	appendEvents(t, s, ev)
	got = claim(t, s, "o1", 5, time.Hour)
	if err := s.Release(ctx, "o1", []int64{got[0].ID}, time.Now().Add(-time.Second)); err != nil {
		t.Fatalf("release now: %v", err)
	}
	checkClaim(t, "claim after release", claim(t, s, "o2", 5, time.Minute), ev)
	clearOutbox(t, s)
}

// testOutboxClaimExclusive: two claimers at once never get the same
// event, every event is handed out once, and each key's events in order.
func testOutboxClaimExclusive(t *testing.T, s storage.AllStorage) {
	clearOutbox(t, s)
	const keys, perKey = 20, 3
	var all []storage.OutboxEvent
	for n := range perKey {
		for k := range keys {
			all = append(all, outboxEvent(fmt.Sprintf("exclusive-%d", k), n))
		}
	}
	appendEvents(t, s, all...)

	var mu sync.Mutex
	seen := map[int64]string{}
	order := map[string][]string{}
	var wg sync.WaitGroup
	deadline := time.Now().Add(30 * time.Second)
	for c := range 2 {
		owner := fmt.Sprintf("claimer-%d", c)
		wg.Go(func() {
			for time.Now().Before(deadline) {
				events, err := s.Claim(context.Background(), owner, 7, time.Minute)
				if err != nil {
					t.Errorf("%s: claim: %v", owner, err)
					return
				}
				mu.Lock()
				for _, ev := range events {
					if other, dup := seen[ev.ID]; dup {
						t.Errorf("event %d claimed by %s and %s", ev.ID, other, owner)
					}
					seen[ev.ID] = owner
					order[ev.Key] = append(order[ev.Key], string(ev.Body))
				}
				done := len(seen) == len(all)
				mu.Unlock()
				ids := make([]int64, len(events))
				for i, ev := range events {
					ids[i] = ev.ID
				}
				if err := s.Delete(context.Background(), ids); err != nil {
					t.Errorf("%s: delete: %v", owner, err)
					return
				}
				if done {
					return
				}
			}
		})
	}
	wg.Wait()
	if len(seen) != len(all) {
		t.Errorf("claimed %d events, want %d", len(seen), len(all))
	}
	for k := range keys {
		key := fmt.Sprintf("exclusive-%d", k)
		var want []string
		for n := range perKey {
			want = append(want, string(outboxEvent(key, n).Body))
		}
		if fmt.Sprint(order[key]) != fmt.Sprint(want) {
			t.Errorf("order of %s: have %q, want %q", key, order[key], want)
		}
	}
}

// testOutboxTrim: the oldest events beyond the bound go first, then by
// age; Trim reports how many it dropped.
func testOutboxTrim(t *testing.T, s storage.AllStorage) {
	ctx := context.Background()
	clearOutbox(t, s)
	var events []storage.OutboxEvent
	for n := range 10 {
		events = append(events, outboxEvent(fmt.Sprintf("trim-%d", n), n))
	}
	for _, ev := range events {
		appendEvents(t, s, ev)
	}
	if n, err := s.Trim(ctx, 0, time.Time{}); err != nil || n != 0 {
		t.Errorf("trim without bounds: have %d, %v; want 0", n, err)
	}
	if n, err := s.Trim(ctx, 4, time.Time{}); err != nil || n != 6 {
		t.Errorf("trim to 4: have %d, %v; want 6", n, err)
	}
	checkClaim(t, "claim after trim", claim(t, s, "o1", 10, time.Minute), events[6:]...)
	if n, err := s.Trim(ctx, 4, time.Time{}); err != nil || n != 0 {
		t.Errorf("trim within the bound: have %d, %v; want 0", n, err)
	}
	clearOutbox(t, s)

	old := outboxEvent("trim-old", 1)
	old.Created = time.Now().Add(-2 * time.Hour)
	fresh := outboxEvent("trim-fresh", 1)
	appendEvents(t, s, old, fresh)
	if n, err := s.Trim(ctx, 100, time.Now().Add(-time.Hour)); err != nil || n != 1 {
		t.Errorf("trim by age: have %d, %v; want 1", n, err)
	}
	checkClaim(t, "claim after trim by age", claim(t, s, "o1", 10, time.Minute), fresh)
	clearOutbox(t, s)
}

// RunOutboxReopen checks that the outbox of a persistent backend survives
// closing and opening it again: open is called twice and must open the
// same storage (directory or database) each time.
func RunOutboxReopen(t *testing.T, open func(t *testing.T) storage.OutboxStore) {
	s := open(t)
	clearOutbox(t, s)
	a, b := NewDevice(t).ID(), NewDevice(t).ID()
	events := []storage.OutboxEvent{outboxEvent(a, 1), outboxEvent(b, 1), outboxEvent(a, 2), outboxEvent(a, 3)}
	appendEvents(t, s, events...)
	// A lease taken before a crash ends by itself.
	claim(t, s, "before", 10, time.Millisecond)
	if c, ok := s.(interface{ Close() error }); ok {
		if err := c.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
	}
	time.Sleep(5 * time.Millisecond)

	s = open(t)
	var have []storage.OutboxEvent
	for range 10 {
		got := claim(t, s, "after", 10, time.Minute)
		if len(got) == 0 {
			break
		}
		have = append(have, got...)
		deleteEvents(t, s, got...)
	}
	checkClaim(t, "events after reopening", have, events...)
}
