package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/log"
	"github.com/nanomdm/nanomdm/log/logtest"
	"github.com/nanomdm/nanomdm/storage"
	"github.com/nanomdm/nanomdm/storage/inmem"
)

// attempt is one request an outboxReceiver got.
type attempt struct {
	body     string
	accepted bool
}

// outboxReceiver records every attempt and answers 503 while down.
type outboxReceiver struct {
	srv  *httptest.Server
	down atomic.Bool
	mu   sync.Mutex
	all  []attempt
}

func newOutboxReceiver(t *testing.T) *outboxReceiver {
	rc := &outboxReceiver{}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ok := !rc.down.Load()
		rc.mu.Lock()
		rc.all = append(rc.all, attempt{body: string(body), accepted: ok})
		rc.mu.Unlock()
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

// accepted returns the bodies the receiver accepted, in arrival order.
func (rc *outboxReceiver) accepted() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []string
	for _, a := range rc.all {
		if a.accepted {
			out = append(out, a.body)
		}
	}
	return out
}

// waitAccepted waits until n bodies were accepted.
func (rc *outboxReceiver) waitAccepted(t *testing.T, n int, within time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := rc.accepted()
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sendEvents makes devices × perDevice Idle events, round robin over
// hooks, each request with its own trace ID (the event_id).
func sendEvents(t *testing.T, hooks []*Webhook, devices, perDevice int) (want map[string][]string) {
	t.Helper()
	want = map[string][]string{}
	n := 0
	for i := range perDevice {
		for d := range devices {
			udid := fmt.Sprintf("OUTBOX-%d", d)
			r, res := idleRequest(t, udid)
			id := fmt.Sprintf("trace-%d-%d", d, i)
			r.Context = log.WithTraceID(context.Background(), id)
			if _, err := hooks[n%len(hooks)].CommandAndReportResults(r, res); err != nil {
				t.Fatalf("event %s: %v", id, err)
			}
			n++
			want[udid] = append(want[udid], id)
		}
	}
	return want
}

// checkDelivered checks that every event of want arrived exactly once
// (by event_id), in order per device.
func checkDelivered(t *testing.T, bodies []string, want map[string][]string) {
	t.Helper()
	have := map[string][]string{}
	seen := map[string]int{}
	for _, b := range bodies {
		var ev Event
		if err := json.Unmarshal([]byte(b), &ev); err != nil {
			t.Fatalf("delivered body: %v", err)
		}
		seen[ev.EventID]++
		have[ev.AcknowledgeEvent.IDs.ID] = append(have[ev.AcknowledgeEvent.IDs.ID], ev.EventID)
	}
	for id, n := range seen {
		if n > 1 {
			t.Errorf("event %s delivered %d times, want once", id, n)
		}
	}
	for udid, ids := range want {
		if fmt.Sprint(have[udid]) != fmt.Sprint(ids) {
			t.Errorf("events of %s: have %v, want %v", udid, have[udid], ids)
		}
	}
}

// TestOutboxEndpointDownThenUp: while the endpoint is down every event
// stays in the outbox; once it is up every event arrives, once, in order
// per device, with the body (event_id included) of its failed attempts.
func TestOutboxEndpointDownThenUp(t *testing.T) {
	rc := newOutboxReceiver(t)
	rc.down.Store(true)
	store := inmem.New()
	w := New(rc.srv.URL, store, WithRetries(1), WithBackoff(time.Millisecond), WithWorkers(3))
	t.Cleanup(func() { w.Close(context.Background()) })
	want := sendEvents(t, []*Webhook{w}, 6, 5)
	time.Sleep(300 * time.Millisecond)
	if st, _ := store.OutboxStats(context.Background()); st.Depth != 30 {
		t.Errorf("outbox while the endpoint is down: %d events, want 30", st.Depth)
	}
	rc.down.Store(false)
	got := rc.waitAccepted(t, 30, 20*time.Second)
	checkDelivered(t, got, want)

	rc.mu.Lock()
	defer rc.mu.Unlock()
	accepted := map[string]bool{}
	for _, b := range got {
		accepted[b] = true
	}
	failed := 0
	for _, a := range rc.all {
		if !a.accepted {
			failed++
			if !accepted[a.body] {
				t.Errorf("a refused body was never delivered unchanged: %s", a.body)
			}
		}
	}
	if failed == 0 {
		t.Error("no attempt while down: the test did not exercise redelivery")
	}
}

// TestOutboxSharedByTwo: two webhooks on one outbox (as two servers on
// one database) deliver every event once, in order per device.
func TestOutboxSharedByTwo(t *testing.T) {
	rc := newOutboxReceiver(t)
	store := inmem.New()
	var hooks []*Webhook
	for range 2 {
		w := New(rc.srv.URL, store, WithWorkers(2))
		t.Cleanup(func() { w.Close(context.Background()) })
		hooks = append(hooks, w)
	}
	want := sendEvents(t, hooks, 10, 8)
	checkDelivered(t, rc.waitAccepted(t, 80, 20*time.Second), want)
	time.Sleep(100 * time.Millisecond)
	if n := len(rc.accepted()); n != 80 {
		t.Errorf("accepted %d deliveries, want 80", n)
	}
}

// TestOutboxLeaseOfDeadServer: an event claimed by a server that died
// (its lease never released) is delivered by another after the lease.
func TestOutboxLeaseOfDeadServer(t *testing.T) {
	rc := newOutboxReceiver(t)
	store := inmem.New()
	body := []byte(`{"topic":"mdm.Connect","event_id":"dead-1"}`)
	if err := store.Append(context.Background(), []storage.OutboxEvent{{Key: "DEV", Body: body}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := store.Claim(context.Background(), "dead-server", 10, 1500*time.Millisecond); len(got) != 1 {
		t.Fatalf("claim: have %d events, want 1", len(got))
	}
	w := New(rc.srv.URL, store)
	t.Cleanup(func() { w.Close(context.Background()) })
	time.Sleep(500 * time.Millisecond)
	if n := len(rc.accepted()); n != 0 {
		t.Fatalf("delivered %d events during the lease, want 0", n)
	}
	got := rc.waitAccepted(t, 1, 10*time.Second)
	if len(got) != 1 || got[0] != string(body) {
		t.Errorf("after the lease: have %q, want %q", got, body)
	}
}

// brokenOutbox fails every outbox write.
type brokenOutbox struct{ *inmem.Storage }

var errDiskFull = errors.New("disk full")

func (brokenOutbox) Append(context.Context, []storage.OutboxEvent) error { return errDiskFull }

// TestOutboxWriteFails: an event the outbox cannot take is reported
// (error and DroppedStore), never delivered, and the next one goes
// through once the outbox works.
func TestOutboxWriteFails(t *testing.T) {
	rc := newOutboxReceiver(t)
	var mu sync.Mutex
	var outcomes []Outcome
	w := New(rc.srv.URL, brokenOutbox{inmem.New()}, WithObserver(ObserverFunc(func(o Outcome) {
		mu.Lock()
		outcomes = append(outcomes, o)
		mu.Unlock()
	})))
	t.Cleanup(func() { w.Close(context.Background()) })
	r, res := idleRequest(t, "BROKEN")
	_, err := w.CommandAndReportResults(r, res)
	if !errors.Is(err, ErrOutbox) || !errors.Is(err, errDiskFull) {
		t.Errorf("error: have %v, want ErrOutbox wrapping the store's error", err)
	}
	mu.Lock()
	if fmtOutcomes(outcomes) != string(DroppedStore) {
		t.Errorf("outcomes: have %v, want %v", outcomes, DroppedStore)
	}
	mu.Unlock()
}

// TestOutboxMaxAge: events older than the age bound are dropped, logged
// and counted.
func TestOutboxMaxAge(t *testing.T) {
	rc := newOutboxReceiver(t)
	rc.down.Store(true)
	store := inmem.New()
	old := storage.OutboxEvent{Key: "OLD", Body: []byte(`{}`), Created: time.Now().Add(-2 * time.Hour)}
	if err := store.Append(context.Background(), []storage.OutboxEvent{old}); err != nil {
		t.Fatal(err)
	}
	var expired atomic.Int32
	logs := &logtest.Recorder{}
	w := New(rc.srv.URL, store, WithMaxAge(time.Hour), WithRetries(0), WithLogger(logs), withTrimInterval(10*time.Millisecond),
		WithObserver(ObserverFunc(func(o Outcome) {
			if o == DroppedExpired {
				expired.Add(1)
			}
		})))
	deadline := time.Now().Add(5 * time.Second)
	for expired.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	w.Close(context.Background())
	if n := expired.Load(); n != 1 {
		t.Errorf("expired outcomes: have %d, want 1", n)
	}
	if len(logs.Text("msg=webhook events dropped", "reason=expired", "count=1")) != 1 {
		t.Errorf("want one drop log, have %v", logs.Text())
	}
	if st, _ := store.OutboxStats(context.Background()); st.Depth != 0 {
		t.Errorf("outbox: %d events, want 0", st.Depth)
	}
}
