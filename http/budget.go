package http

import (
	"context"
	"errors"
	"fmt"
	nethttp "net/http"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultBodyBudget is the default of the process-wide body budget.
const DefaultBodyBudget = 64 << 20

// DefaultBudgetWait is how long a request waits for room in the body
// budget before it is answered 503.
const DefaultBudgetWait = time.Second

// ErrOverBudget means a request body did not fit in the body budget
// within the wait.
var ErrOverBudget = errors.New("request bodies in flight over budget")

// BodyBudget bounds the bytes of request bodies being read or held at
// once by every handler that shares it. A request reserves its body
// before the body is read and gives the reservation back when it has
// been answered. It is safe for concurrent use.
//
// The budget also keeps the garbage of bodies in check. The Go runtime
// lets the heap grow to twice what was live at the last collection
// before it collects again: with a full budget live, that is twice the
// budget. So whenever bodies of an eighth of the budget have been given
// back since the last collection, the budget collects, and no body is
// reserved until that is done: the heap then holds at most the budget
// of live bodies and an eighth of a budget of dead ones. When nothing is
// held any more and a sixteenth of the budget was given back, it collects and
// also returns the freed memory to the operating system
// (debug.FreeOSMemory), so that after a burst the process shrinks back.
// Bodies of a few kilobytes, the usual device request, cause one
// collection per thousands of requests, and its pause (milliseconds on
// a small heap) delays only requests with bodies.
type BodyBudget struct {
	limit int64
	wait  time.Duration

	mu         sync.Mutex
	used       int64
	released   int64         // bytes given back since the last collection
	collecting bool          // no reservations while set
	changed    chan struct{} // closed and replaced when room may have been made

	inFlight atomic.Int64
	refused  atomic.Int64
}

// NewBodyBudget returns a budget of limit bytes; a request waits up to
// wait for room before it is refused.
func NewBodyBudget(limit int64, wait time.Duration) *BodyBudget {
	return &BodyBudget{limit: limit, wait: wait, changed: make(chan struct{})}
}

// Limit returns the size of the budget in bytes.
func (b *BodyBudget) Limit() int64 { return b.limit }

// InFlight returns the bytes reserved now.
func (b *BodyBudget) InFlight() int64 { return b.inFlight.Load() }

// Refused returns how many requests were refused for the budget so far.
func (b *BodyBudget) Refused() int64 { return b.refused.Load() }

// Reserve reserves n bytes, waiting up to the budget's wait for others to
// give theirs back, and returns the function that gives them back. It
// fails with ErrOverBudget when no room was made in time (at once when n
// exceeds the whole budget), or with the context's error.
func (b *BodyBudget) Reserve(ctx context.Context, n int64) (release func(), err error) {
	if n <= 0 {
		return func() {}, nil
	}
	if n > b.limit {
		b.refused.Add(1)
		return nil, fmt.Errorf("%w: %d bytes, budget %d", ErrOverBudget, n, b.limit)
	}
	var timeout <-chan time.Time
	for {
		b.mu.Lock()
		if !b.collecting && b.used+n <= b.limit {
			b.used += n
			b.inFlight.Store(b.used)
			b.mu.Unlock()
			var once sync.Once
			return func() { once.Do(func() { b.release(n) }) }, nil
		}
		changed := b.changed
		b.mu.Unlock()
		if timeout == nil {
			t := time.NewTimer(b.wait)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-changed:
		case <-timeout:
			b.refused.Add(1)
			return nil, fmt.Errorf("%w: %d bytes waited %v", ErrOverBudget, n, b.wait)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (b *BodyBudget) release(n int64) {
	b.mu.Lock()
	b.used -= n
	b.inFlight.Store(b.used)
	b.released += n
	collect := !b.collecting && b.dueCollection()
	if collect {
		b.collecting = true
	} else {
		b.wake()
	}
	b.mu.Unlock()
	if collect {
		go b.collect()
	}
}

// dueCollection reports whether enough was given back for a collection,
// and if so starts counting afresh; b.mu is held.
func (b *BodyBudget) dueCollection() bool {
	if b.released < b.limit/8 && (b.used > 0 || b.released < b.limit/16) {
		return false
	}
	b.released = 0
	return true
}

// collect runs garbage collections, returning freed memory to the
// operating system when idle, until no collection is due, and then lets
// reservations go on. Bodies given back while a collection runs survive
// it (it keeps what was reachable when it began), so it goes again when
// they add up: otherwise reservations would resume next to them, and the
// heap reach twice the budget.
func (b *BodyBudget) collect() {
	for {
		b.mu.Lock()
		idle := b.used == 0
		b.mu.Unlock()
		if idle {
			debug.FreeOSMemory()
		} else {
			runtime.GC()
		}
		b.mu.Lock()
		if !b.dueCollection() {
			b.collecting = false
			b.wake()
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
	}
}

// wake tells waiting reservations to look again; b.mu is held.
func (b *BodyBudget) wake() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// Middleware reserves the body of each request in b (see ReserveBody)
// before next may read it, and gives the reservation back when next
// returns. Put it after authentication, so that strangers take no room.
func (b *BodyBudget) Middleware(next nethttp.Handler, limit int64) nethttp.Handler {
	return nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		release, ok := b.ReserveBody(w, r, limit)
		if !ok {
			return
		}
		defer release()
		next.ServeHTTP(w, r)
	})
}

// ReserveBody reserves the body of r: Content-Length bytes, or limit when
// the length is unknown (the body is then cut at limit, so the
// reservation always covers what is read; so is a longer declared one,
// which a handler reading it answers 413). A limit of 0, or one above
// the budget, means the whole budget. A body that finds no room is
// answered 503 with Retry-After without being read, and ok is false. Otherwise the caller
// must call release once it no longer holds the body.
func (b *BodyBudget) ReserveBody(w nethttp.ResponseWriter, r *nethttp.Request, limit int64) (release func(), ok bool) {
	if limit <= 0 || limit > b.limit {
		limit = b.limit
	}
	n := r.ContentLength
	if n < 0 || n > limit {
		// Unknown, or more than a handler will read: the body is cut at
		// limit, and a handler that reads it answers 413.
		n = limit
		r.Body = nethttp.MaxBytesReader(w, r.Body, limit)
	}
	release, err := b.Reserve(r.Context(), n)
	if err != nil {
		writeOverBudget(w, b.wait)
		return nil, false
	}
	return release, true
}

// writeOverBudget answers 503 with a Retry-After of about wait (at least
// one second): devices and well-behaved clients come back then.
func writeOverBudget(w nethttp.ResponseWriter, wait time.Duration) {
	secs := int((wait + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
	nethttp.Error(w, "server busy: too many request bodies in flight, retry later", nethttp.StatusServiceUnavailable)
}
