package http

import (
	"context"
	"errors"
	"io"
	nethttp "net/http"
	"net/http/httptest"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"
)

// countingBody is a request body of n zero bytes that counts what is
// read from it.
type countingBody struct {
	left int64
	read atomic.Int64
}

func newCountingBody(n int64) *countingBody { return &countingBody{left: n} }

func (b *countingBody) Read(p []byte) (int, error) {
	if b.left == 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), b.left)]
	clear(p)
	b.left -= int64(len(p))
	b.read.Add(int64(len(p)))
	return len(p), nil
}

func (*countingBody) Close() error { return nil }

// bodyRequest is a POST whose body is body, declared as length bytes
// (-1: unknown).
func bodyRequest(body io.ReadCloser, length int64) *nethttp.Request {
	r := httptest.NewRequest(nethttp.MethodPost, "/mdm", nil)
	r.Body = body
	r.ContentLength = length
	return r
}

// reading is a handler that reads the whole body as the MDM and API
// handlers do, records how much of the budget was reserved while it ran,
// and answers 200, or the status ReadBody's error calls for.
type reading struct {
	budget   *BodyBudget
	limit    int64
	inFlight atomic.Int64
	calls    atomic.Int64
}

func (h *reading) ServeHTTP(w nethttp.ResponseWriter, r *nethttp.Request) {
	h.calls.Add(1)
	h.inFlight.Store(h.budget.InFlight())
	if _, err := ReadBody(w, r, h.limit); err != nil {
		status := BodyStatus(err)
		nethttp.Error(w, nethttp.StatusText(status), status)
	}
}

func mustReserve(t *testing.T, b *BodyBudget, n int64) func() {
	t.Helper()
	release, err := b.Reserve(context.Background(), n)
	if err != nil {
		t.Fatalf("reserving %d bytes: %v", n, err)
	}
	return release
}

func checkBudget(t *testing.T, b *BodyBudget, inFlight, refused int64) {
	t.Helper()
	if have := b.InFlight(); have != inFlight {
		t.Errorf("have %d bytes in flight, want %d", have, inFlight)
	}
	if have := b.Refused(); have != refused {
		t.Errorf("have %d refused, want %d", have, refused)
	}
}

// TestBodyBudgetFull: a body that finds no room within the wait is
// answered 503 with Retry-After, its handler is not called and not a
// byte of it is read; it is counted as refused and reserves nothing.
func TestBodyBudgetFull(t *testing.T) {
	b := NewBodyBudget(100, time.Nanosecond)
	h := &reading{budget: b}
	hold := mustReserve(t, b, 95)
	body := newCountingBody(10)
	rec := httptest.NewRecorder()
	b.Middleware(h, 0).ServeHTTP(rec, bodyRequest(body, 10))
	if rec.Code != nethttp.StatusServiceUnavailable {
		t.Errorf("have status %d, want 503", rec.Code)
	}
	if have := rec.Header().Get("Retry-After"); have != "1" {
		t.Errorf("have Retry-After %q, want 1", have)
	}
	if n := h.calls.Load(); n != 0 {
		t.Errorf("handler called %d times, want 0", n)
	}
	if n := body.read.Load(); n != 0 {
		t.Errorf("%d bytes of the refused body read, want 0", n)
	}
	checkBudget(t, b, 95, 1)
	hold()
	checkBudget(t, b, 0, 1)
}

// TestRetryAfter: Retry-After is the wait in whole seconds, rounded up,
// and at least one.
func TestRetryAfter(t *testing.T) {
	for wait, want := range map[time.Duration]string{
		0: "1", time.Nanosecond: "1", time.Second: "1", 1500 * time.Millisecond: "2", 5 * time.Second: "5",
	} {
		rec := httptest.NewRecorder()
		writeOverBudget(rec, wait)
		if have := rec.Header().Get("Retry-After"); have != want || rec.Code != nethttp.StatusServiceUnavailable {
			t.Errorf("wait %v: have status %d, Retry-After %q; want 503, %q", wait, rec.Code, have, want)
		}
	}
}

// TestBodyBudgetLargerThanBudget: a reservation larger than the whole
// budget is refused at once, however long the wait.
func TestBodyBudgetLargerThanBudget(t *testing.T) {
	b := NewBodyBudget(100, time.Hour)
	if _, err := b.Reserve(context.Background(), 101); !errors.Is(err, ErrOverBudget) {
		t.Fatalf("have error %v, want ErrOverBudget", err)
	}
	checkBudget(t, b, 0, 1)
}

// TestBodyBudgetWaitAdmits: a request waiting for room gets in when
// another gives its reservation back within the wait, and its body is
// then read whole.
func TestBodyBudgetWaitAdmits(t *testing.T) {
	b := NewBodyBudget(100, time.Hour)
	h := &reading{budget: b}
	hold := mustReserve(t, b, 95)
	body := newCountingBody(10)
	done := make(chan int)
	go func() {
		rec := httptest.NewRecorder()
		b.Middleware(h, 0).ServeHTTP(rec, bodyRequest(body, 10))
		done <- rec.Code
	}()
	select {
	case code := <-done:
		t.Fatalf("answered %d while the budget was full, want a wait", code)
	default:
	}
	hold()
	if code := <-done; code != nethttp.StatusOK {
		t.Errorf("have status %d, want 200", code)
	}
	if have := h.inFlight.Load(); have != 10 {
		t.Errorf("have %d bytes in flight in the handler, want 10", have)
	}
	if n := body.read.Load(); n != 10 {
		t.Errorf("read %d bytes of the body, want 10", n)
	}
	checkBudget(t, b, 0, 0)
}

// TestBodyBudgetContextEnds: a request whose client goes away while it
// waits stops waiting; it reserved nothing and is not counted as refused
// for the budget.
func TestBodyBudgetContextEnds(t *testing.T) {
	b := NewBodyBudget(100, time.Hour)
	hold := mustReserve(t, b, 100)
	defer hold()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.Reserve(ctx, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("have error %v, want context.Canceled", err)
	}
	checkBudget(t, b, 100, 0)
}

// TestBodyBudgetReservation: what a request reserves. A declared length
// within the limit reserves that length; an unknown one, or one above
// the limit, reserves the limit and the body is cut there (413 from a
// handler reading past it); a limit of 0, or above the budget, means the
// whole budget.
func TestBodyBudgetReservation(t *testing.T) {
	tests := []struct {
		name         string
		limit        int64 // of the middleware
		declared     int64
		size         int64 // of the body sent
		wantReserved int64
		wantStatus   int
	}{
		{name: "declared", limit: 50, declared: 30, size: 30, wantReserved: 30, wantStatus: 200},
		{name: "unknown length within the limit", limit: 50, declared: -1, size: 30, wantReserved: 50, wantStatus: 200},
		{name: "unknown length past the limit", limit: 50, declared: -1, size: 80, wantReserved: 50, wantStatus: 413},
		{name: "declared past the limit", limit: 50, declared: 80, size: 80, wantReserved: 50, wantStatus: 413},
		{name: "no limit", limit: 0, declared: -1, size: 30, wantReserved: 100, wantStatus: 200},
		{name: "limit above the budget", limit: 500, declared: -1, size: 30, wantReserved: 100, wantStatus: 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBodyBudget(100, time.Nanosecond)
			h := &reading{budget: b}
			body := newCountingBody(tc.size)
			rec := httptest.NewRecorder()
			b.Middleware(h, tc.limit).ServeHTTP(rec, bodyRequest(body, tc.declared))
			if rec.Code != tc.wantStatus {
				t.Errorf("have status %d, want %d", rec.Code, tc.wantStatus)
			}
			if have := h.inFlight.Load(); have != tc.wantReserved {
				t.Errorf("have %d bytes reserved, want %d", have, tc.wantReserved)
			}
			if n := body.read.Load(); n > tc.wantReserved+512 {
				// MaxBytesReader reads a little past the limit to see
				// that the body is longer; it never hands that on.
				t.Errorf("read %d bytes, want about %d at most", n, tc.wantReserved)
			}
			checkBudget(t, b, 0, 0)
		})
	}
}

// TestBodyBudgetReleases: the reservation is given back however the
// handler ends, and giving it back twice gives it back once.
func TestBodyBudgetReleases(t *testing.T) {
	tests := []struct {
		name    string
		handler nethttp.HandlerFunc
	}{
		{"read whole", func(w nethttp.ResponseWriter, r *nethttp.Request) { io.Copy(io.Discard, r.Body) }},
		{"body not read", func(w nethttp.ResponseWriter, r *nethttp.Request) {
			nethttp.Error(w, "no", nethttp.StatusBadRequest)
		}},
		{"read in part", func(w nethttp.ResponseWriter, r *nethttp.Request) { r.Body.Read(make([]byte, 3)) }},
		{"panic", func(w nethttp.ResponseWriter, r *nethttp.Request) { panic(nethttp.ErrAbortHandler) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBodyBudget(100, time.Nanosecond)
			func() {
				defer func() { recover() }()
				b.Middleware(tc.handler, 0).ServeHTTP(httptest.NewRecorder(), bodyRequest(newCountingBody(40), 40))
			}()
			checkBudget(t, b, 0, 0)
		})
	}
	t.Run("released twice", func(t *testing.T) {
		b := NewBodyBudget(100, time.Nanosecond)
		release := mustReserve(t, b, 40)
		hold := mustReserve(t, b, 30)
		release()
		release()
		checkBudget(t, b, 30, 0)
		hold()
		checkBudget(t, b, 0, 0)
	})
}

// waitCollected waits until the collection the budget started, if any,
// is done, and reports whether there was one.
func waitCollected(b *BodyBudget) bool {
	b.mu.Lock()
	collecting, changed := b.collecting, b.changed
	b.mu.Unlock()
	if collecting {
		<-changed
	}
	return collecting
}

// heapObjects reads the bytes of live and not yet collected heap objects
// from runtime/metrics.
func heapObjects() int64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}

// TestBodyBudgetHeapGoesBack: once a burst is over (nothing in flight),
// the budget collects, and the heap is back to its size before the
// burst, the bodies read through the real handler gone from it. The
// burst is one body, below what starts a collection while others are in
// flight, so only the collection when idle takes it away: the Go runtime
// alone would leave it until its heap doubles.
func TestBodyBudgetHeapGoesBack(t *testing.T) {
	const (
		budget    = 64 << 20
		size      = budget / 10 // between a sixteenth and an eighth
		tolerance = 1 << 20
	)
	b := NewBodyBudget(budget, time.Nanosecond)
	h := b.Middleware(&reading{budget: b}, 0)
	idle := heapObjects()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, bodyRequest(newCountingBody(size), size))
	if rec.Code != nethttp.StatusOK {
		t.Fatalf("have status %d, want 200", rec.Code)
	}
	if !waitCollected(b) {
		t.Error("no collection once the burst was over")
	}
	after := heapObjects()
	t.Logf("heap objects: %.1f MB before the burst, %.1f MB after", float64(idle)/1e6, float64(after)/1e6)
	if after > idle+tolerance {
		t.Errorf("heap objects %d bytes after the burst, want at most %d (idle %d + %d)", after, idle+tolerance, idle, tolerance)
	}
}
