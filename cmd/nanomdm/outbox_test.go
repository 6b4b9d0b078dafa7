package main

// Process tests of the durable webhook: the real binary, killed with
// SIGKILL while events wait for an endpoint that is down, and two
// servers sharing one outbox.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/mdm/simulator"
)

// outboxHook is a webhook receiver that answers 503 while down and
// records, in arrival order, every event it accepts.
type outboxHook struct {
	url  string
	down atomic.Bool
	mu   sync.Mutex
	got  []hookEvent
	seen map[string]int // event_id: times accepted
}

type hookEvent struct {
	id, device string
	created    time.Time
	// command and status of an acknowledge event (a command report).
	command, status string
}

func newOutboxHook(t *testing.T) *outboxHook {
	t.Helper()
	h := &outboxHook{seen: map[string]int{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening: %v", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if h.down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		var ev struct {
			EventID   string    `json:"event_id"`
			CreatedAt time.Time `json:"created_at"`
			Checkin   *struct {
				IDs struct{ ID string } `json:"ids"`
			} `json:"checkin_event"`
			Ack *struct {
				IDs         struct{ ID string } `json:"ids"`
				CommandUUID string              `json:"command_uuid"`
				Status      string              `json:"status"`
			} `json:"acknowledge_event"`
		}
		json.Unmarshal(body, &ev)
		got := hookEvent{id: ev.EventID, created: ev.CreatedAt}
		if ev.Checkin != nil {
			got.device = ev.Checkin.IDs.ID
		} else if ev.Ack != nil {
			got.device, got.command, got.status = ev.Ack.IDs.ID, ev.Ack.CommandUUID, ev.Ack.Status
		}
		h.mu.Lock()
		h.got = append(h.got, got)
		h.seen[ev.EventID]++
		h.mu.Unlock()
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	h.url = "http://" + ln.Addr().String() + "/hook"
	return h
}

// unique returns how many distinct events were accepted.
func (h *outboxHook) unique() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.seen)
}

// waitUnique waits until want distinct events arrived and returns how
// long that took.
func (h *outboxHook) waitUnique(t *testing.T, want int, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for h.unique() < want && time.Since(start) < within {
		time.Sleep(20 * time.Millisecond)
	}
	if n := h.unique(); n != want {
		t.Fatalf("webhook received %d distinct events, want %d", n, want)
	}
	return time.Since(start)
}

// acknowledged returns the set of "device command" pairs of which an
// Acknowledged report event arrived.
func (h *outboxHook) acknowledged() map[string]bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	acks := map[string]bool{}
	for _, ev := range h.got {
		if ev.status == mdm.StatusAcknowledged {
			acks[ev.device+" "+ev.command] = true
		}
	}
	return acks
}

// check verifies per-device order (created_at never goes back in the
// first deliveries of a device), except for the devices in unordered,
// and reports duplicates.
func (h *outboxHook) check(t *testing.T, wantNoDuplicates bool, unordered ...string) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	last := map[string]time.Time{}
	first := map[string]bool{}
	for _, ev := range h.got {
		if first[ev.id] {
			continue
		}
		first[ev.id] = true
		if slices.Contains(unordered, ev.device) {
			continue
		}
		if ev.created.Before(last[ev.device]) {
			t.Errorf("device %s: event %s (%v) after a later one (%v)", ev.device, ev.id, ev.created, last[ev.device])
		}
		last[ev.device] = ev.created
	}
	dups := 0
	for _, n := range h.seen {
		dups += n - 1
	}
	if wantNoDuplicates && dups > 0 {
		t.Errorf("%d duplicate deliveries in normal operation, want none", dups)
	}
	t.Logf("deliveries: %d, distinct events: %d, duplicates: %d", len(h.got), len(h.seen), dups)
}

// outboxTraffic enrolls devices on the servers (round robin) and sends
// idles Idle reports from each; it returns how many events the server
// must deliver (two per enrolment, one per answered report).
func outboxTraffic(t *testing.T, setups []*serverSetup, devices, idles int) int {
	t.Helper()
	client := &http.Client{Timeout: 15 * time.Second}
	var events atomic.Int64
	var wg sync.WaitGroup
	for i := range devices {
		setup := setups[i%len(setups)]
		id, err := setup.ca.Issue(fmt.Sprintf("outbox device %d", i))
		if err != nil {
			t.Fatalf("issuing identity: %v", err)
		}
		wg.Go(func() {
			d := simulator.NewDevice(&simulator.Transport{URL: setup.url() + "/mdm", Client: client}, id)
			if err := d.Enroll(context.Background()); err != nil {
				t.Errorf("enrolling: %v", err)
				return
			}
			events.Add(2)
			for range idles {
				if _, err := d.Channel.Send(context.Background(), simulator.Report{Status: mdm.StatusIdle}); err != nil {
					t.Errorf("idle: %v", err)
					continue
				}
				events.Add(1)
			}
		})
	}
	wg.Wait()
	return int(events.Load())
}

// TestOutboxKill9: events made while the endpoint is down survive a
// SIGKILL of the server; after the restart, with the endpoint up, every
// one arrives, in order per device.
func TestOutboxKill9(t *testing.T) {
	for _, be := range []backend{fileBackend, pgsqlBackend, mysqlBackend} {
		t.Run(be.name, func(t *testing.T) {
			hook := newOutboxHook(t)
			hook.down.Store(true)
			setup := newServerSetup(t, be.flags(t), "-webhook-url", hook.url, "-webhook-retries", "0")
			p := setup.start()
			want := outboxTraffic(t, []*serverSetup{setup}, 20, 10)
			p.kill()
			hook.down.Store(false)
			setup.start()
			took := hook.waitUnique(t, want, 60*time.Second)
			hook.check(t, false)
			t.Logf("%s: %d events delivered after restart in %v (%.0f events/s, including start-up)",
				be.name, want, took.Round(time.Millisecond), float64(want)/took.Seconds())
		})
	}
}

// TestOutboxDownThenUp: the endpoint is down for the whole load run, then
// up: every event arrives once, in order per device; the figure is the
// delivery rate of a backlog.
func TestOutboxDownThenUp(t *testing.T) {
	for _, be := range []backend{fileBackend, inmemBackend, pgsqlBackend, mysqlBackend} {
		t.Run(be.name, func(t *testing.T) {
			hook := newOutboxHook(t)
			hook.down.Store(true)
			setup := newServerSetup(t, be.flags(t), "-webhook-url", hook.url, "-webhook-retries", "0")
			setup.start()
			want := outboxTraffic(t, []*serverSetup{setup}, 50, 20)
			hook.down.Store(false)
			took := hook.waitUnique(t, want, 120*time.Second)
			hook.check(t, true)
			t.Logf("%s: backlog of %d events delivered in %v (%.0f events/s)",
				be.name, want, took.Round(time.Millisecond), float64(want)/took.Seconds())
		})
	}
}

// TestOutboxTwoInstances: two servers on one database share the outbox
// (both dispatchers claim from it): every event arrives exactly once, in
// order per device.
func TestOutboxTwoInstances(t *testing.T) {
	for _, be := range []backend{pgsqlBackend, mysqlBackend} {
		t.Run(be.name, func(t *testing.T) {
			hook := newOutboxHook(t)
			flags := be.flags(t)
			var setups []*serverSetup
			for range 2 {
				s := newServerSetup(t, flags, "-webhook-url", hook.url)
				s.start()
				setups = append(setups, s)
			}
			// Devices talk to the first server (each server has its own
			// CA here); both claim from the shared outbox.
			want := outboxTraffic(t, setups[:1], 40, 10)
			hook.waitUnique(t, want, 60*time.Second)
			time.Sleep(500 * time.Millisecond)
			hook.check(t, true)
		})
	}
}
