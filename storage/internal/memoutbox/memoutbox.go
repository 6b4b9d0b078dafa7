// Package memoutbox is the outbox logic of the backends that keep their
// outbox index in memory (storage/inmem, and storage/file, which also
// writes each event to a file): ordering, one event per key at a time,
// leases, trimming. It is safe for concurrent use.
package memoutbox

import (
	"slices"
	"sync"
	"time"

	"github.com/nanomdm/nanomdm/storage"
)

// entry is one event and its lease.
type entry struct {
	ev         storage.OutboxEvent
	owner      string
	leaseUntil time.Time
}

// Outbox is an in-memory outbox index. Events are kept in ID order.
type Outbox struct {
	mu     sync.Mutex
	lastID int64
	// order holds the IDs in increasing order; deleted ones are dropped
	// lazily (they are missing from byID).
	order []int64
	byID  map[int64]*entry
}

// New returns an empty outbox.
func New() *Outbox { return &Outbox{byID: map[int64]*entry{}} }

// NextID returns a new ID, greater than every ID given out or loaded:
// the current time in Unix nanoseconds, or the last ID plus one, so that
// IDs keep increasing across restarts of a store that persists them.
func (o *Outbox) NextID(now time.Time) int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.nextID(now)
}

func (o *Outbox) nextID(now time.Time) int64 {
	o.lastID = max(o.lastID+1, now.UnixNano())
	return o.lastID
}

// Add inserts events that already have an ID (written to disk, or
// loaded from it), in any order, keeping their Created times.
func (o *Outbox) Add(events ...storage.OutboxEvent) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, ev := range events {
		if o.byID[ev.ID] != nil {
			continue
		}
		o.byID[ev.ID] = &entry{ev: ev}
		o.lastID = max(o.lastID, ev.ID)
		if n := len(o.order); n == 0 || o.order[n-1] < ev.ID {
			o.order = append(o.order, ev.ID)
			continue
		}
		i, found := slices.BinarySearch(o.order, ev.ID)
		if !found {
			o.order = slices.Insert(o.order, i, ev.ID)
		}
	}
}

// Append gives events IDs and Created times and stores them.
func (o *Outbox) Append(events []storage.OutboxEvent, now time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i := range events {
		ev := &events[i]
		ev.ID = o.nextID(now)
		if ev.Created.IsZero() {
			ev.Created = now
		}
		o.byID[ev.ID] = &entry{ev: *ev}
		o.order = append(o.order, ev.ID)
	}
}

// Claim implements storage.OutboxStore.Claim at time now.
func (o *Outbox) Claim(owner string, n int, lease time.Duration, now time.Time) []storage.OutboxEvent {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.compact()
	var out []storage.OutboxEvent
	seen := map[string]bool{}
	for _, id := range o.order {
		if len(out) >= n {
			break
		}
		e := o.byID[id]
		if e == nil || seen[e.ev.Key] {
			continue
		}
		seen[e.ev.Key] = true
		if e.leaseUntil.After(now) {
			continue
		}
		e.owner, e.leaseUntil = owner, now.Add(lease)
		out = append(out, e.ev)
	}
	return out
}

// compact drops deleted IDs from order once they are half of it. Callers
// hold mu.
func (o *Outbox) compact() {
	if len(o.order) < 64 || len(o.byID) > len(o.order)/2 {
		return
	}
	kept := o.order[:0]
	for _, id := range o.order {
		if o.byID[id] != nil {
			kept = append(kept, id)
		}
	}
	o.order = kept
}

// Delete removes ids and returns those it held.
func (o *Outbox) Delete(ids []int64) []int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []int64
	for _, id := range ids {
		if o.byID[id] != nil {
			delete(o.byID, id)
			out = append(out, id)
		}
	}
	return out
}

// Release implements storage.OutboxStore.Release.
func (o *Outbox) Release(owner string, ids []int64, retryAt time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, id := range ids {
		if e := o.byID[id]; e != nil && e.owner == owner {
			e.owner, e.leaseUntil = "", retryAt
		}
	}
}

// Trim removes the events created before before (unless zero), then the
// oldest beyond maxEvents (unless 0 or less), and returns their IDs.
func (o *Outbox) Trim(maxEvents int, before time.Time) []int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []int64
	excess := 0
	if maxEvents > 0 {
		excess = len(o.byID) - maxEvents
	}
	for _, id := range o.order {
		e := o.byID[id]
		if e == nil {
			continue
		}
		if excess > 0 || (!before.IsZero() && e.ev.Created.Before(before)) {
			delete(o.byID, id)
			out = append(out, id)
			excess--
		}
	}
	o.compact()
	return out
}

// Stats implements storage.OutboxStore.OutboxStats.
func (o *Outbox) Stats() storage.OutboxStats {
	o.mu.Lock()
	defer o.mu.Unlock()
	st := storage.OutboxStats{Depth: len(o.byID)}
	for _, id := range o.order {
		if e := o.byID[id]; e != nil {
			if st.Oldest.IsZero() || e.ev.Created.Before(st.Oldest) {
				st.Oldest = e.ev.Created
			}
		}
	}
	return st
}
