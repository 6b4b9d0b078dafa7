package webhook

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/groob/plist"

	"github.com/nanomdm/nanomdm/log"
	"github.com/nanomdm/nanomdm/log/logtest"
	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/mdm/simulator"
	"github.com/nanomdm/nanomdm/storage/inmem"
)

// decodeEvent decodes a delivered body into an Event.
func decodeEvent(t *testing.T, d delivery) *Event {
	t.Helper()
	var ev Event
	if err := json.Unmarshal(d.body, &ev); err != nil {
		t.Fatalf("decoding event: %v\n%s", err, d.body)
	}
	return &ev
}

// TestDeviceLife follows one simulated device through the real handlers:
// Authenticate, two TokenUpdates, an Idle poll that fetches a command,
// the command's Acknowledged report and CheckOut. It checks the order and
// content of the events, their signature and that each event_id is the
// trace ID the server logged for that request.
func TestDeviceLife(t *testing.T) {
	key := []byte("webhook secret")
	rc := newReceiver(t, nil)
	h := newHarness(t, rc.srv.URL, WithHMACKey(key))
	dev := h.device(t, simulator.NewUDID())
	dev.Transport = h.transport("?site=lab")
	ctx := context.Background()

	if err := dev.Authenticate(ctx); err != nil {
		t.Fatalf("authenticate: %v", err)
	}
	for i := 0; i < 2; i++ {
		if err := dev.Channel.TokenUpdate(ctx); err != nil {
			t.Fatalf("token update %d: %v", i+1, err)
		}
	}
	cmd, err := mdm.NewCommand("life-cmd-1", "DeviceInformation", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.store.EnqueueCommand(ctx, []string{dev.UDID()}, cmd); err != nil {
		t.Fatalf("enqueue: %v", err)
	}
	got, err := dev.Channel.Idle(ctx)
	if err != nil || got == nil || got.CommandUUID != cmd.CommandUUID {
		t.Fatalf("idle answer = %v, %v; want command %s", got, err, cmd.CommandUUID)
	}
	if next, err := dev.Channel.Send(ctx, simulator.Acknowledge(got)); err != nil || next != nil {
		t.Fatalf("acknowledge answer = %v, %v; want no command", next, err)
	}
	if err := dev.CheckOut(ctx); err != nil {
		t.Fatalf("check-out: %v", err)
	}

	want := []struct {
		topic, status, uuid, messageType string
		tally                            int
	}{
		{topic: TopicAuthenticate, messageType: "Authenticate"},
		{topic: TopicTokenUpdate, messageType: "TokenUpdate", tally: 1},
		{topic: TopicTokenUpdate, messageType: "TokenUpdate", tally: 2},
		{topic: TopicConnect, status: "Idle"},
		{topic: TopicConnect, status: "Acknowledged", uuid: cmd.CommandUUID},
		{topic: TopicCheckOut, messageType: "CheckOut"},
	}
	deliveries := rc.wait(t, len(want))
	if len(deliveries) != len(want) {
		t.Fatalf("have %d events, want %d", len(deliveries), len(want))
	}
	traceIDs := h.logs.Text("handler=log", "path=/mdm")
	if len(traceIDs) != len(want) {
		t.Fatalf("have %d request log lines, want %d", len(traceIDs), len(want))
	}
	seen := map[string]bool{}
	for i, w := range want {
		d := deliveries[i]
		ev := decodeEvent(t, d)
		if ev.Topic != w.topic {
			t.Errorf("event %d: topic = %q, want %q", i, ev.Topic, w.topic)
			continue
		}
		if ct := d.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("event %d: Content-Type = %q, want application/json", i, ct)
		}
		if sig := d.header.Get(SignatureHeader); sig != sign(key, d.body) {
			t.Errorf("event %d: %s = %q, want the HMAC of the body", i, SignatureHeader, sig)
		}
		if !traceIDPattern.MatchString(ev.EventID) || seen[ev.EventID] {
			t.Errorf("event %d: event_id = %q, want a fresh trace ID", i, ev.EventID)
		}
		seen[ev.EventID] = true
		if !bytes.Contains([]byte(traceIDs[i]), []byte("trace_id="+ev.EventID)) {
			t.Errorf("event %d: event_id %q is not the trace ID of request %d: %s", i, ev.EventID, i, traceIDs[i])
		}
		if time.Since(ev.CreatedAt) > time.Minute || ev.CreatedAt.Location() != time.UTC {
			t.Errorf("event %d: created_at = %v, want a recent UTC time", i, ev.CreatedAt)
		}
		wantIDs := IDs{ID: dev.UDID(), Type: "Device"}
		wantParams := map[string]string{"site": "lab"}
		var raw []byte
		if w.topic == TopicConnect {
			a := ev.AcknowledgeEvent
			if a == nil || ev.CheckinEvent != nil {
				t.Errorf("event %d: want only acknowledge_event, have %s", i, d.body)
				continue
			}
			if a.Status != w.status || a.CommandUUID != w.uuid || a.UDID != dev.UDID() {
				t.Errorf("event %d: status, command_uuid, udid = %q, %q, %q; want %q, %q, %q",
					i, a.Status, a.CommandUUID, a.UDID, w.status, w.uuid, dev.UDID())
			}
			if a.IDs == nil || *a.IDs != wantIDs {
				t.Errorf("event %d: ids = %+v, want %+v", i, a.IDs, wantIDs)
			}
			if len(a.URLParams) != 1 || a.URLParams["site"] != "lab" {
				t.Errorf("event %d: url_params = %v, want %v", i, a.URLParams, wantParams)
			}
			raw = a.RawPayload
		} else {
			c := ev.CheckinEvent
			if c == nil || ev.AcknowledgeEvent != nil {
				t.Errorf("event %d: want only checkin_event, have %s", i, d.body)
				continue
			}
			if c.UDID != dev.UDID() || c.IDs == nil || *c.IDs != wantIDs {
				t.Errorf("event %d: udid, ids = %q, %+v; want %q, %+v", i, c.UDID, c.IDs, dev.UDID(), wantIDs)
			}
			if len(c.URLParams) != 1 || c.URLParams["site"] != "lab" {
				t.Errorf("event %d: url_params = %v, want %v", i, c.URLParams, wantParams)
			}
			switch {
			case w.tally == 0 && c.TokenUpdateTally != nil:
				t.Errorf("event %d: token_update_tally = %d, want none", i, *c.TokenUpdateTally)
			case w.tally != 0 && (c.TokenUpdateTally == nil || *c.TokenUpdateTally != w.tally):
				t.Errorf("event %d: token_update_tally = %v, want %d", i, c.TokenUpdateTally, w.tally)
			}
			raw = c.RawPayload
		}
		var payload struct{ MessageType, Status, UDID string }
		if err := plist.Unmarshal(raw, &payload); err != nil {
			t.Errorf("event %d: raw_payload is not a plist: %v", i, err)
		}
		if payload.MessageType != w.messageType || payload.UDID != dev.UDID() {
			t.Errorf("event %d: raw_payload MessageType, UDID = %q, %q; want %q, %q",
				i, payload.MessageType, payload.UDID, w.messageType, dev.UDID())
		}
	}
}

// checkinPlist encodes a check-in message for the channel keys e.
func checkinPlist(t *testing.T, messageType string, e map[string]any) []byte {
	t.Helper()
	m := map[string]any{"MessageType": messageType, "Topic": simulator.DefaultTopic}
	for k, v := range e {
		m[k] = v
	}
	switch messageType {
	case mdm.MessageTokenUpdate:
		m["Token"], m["PushMagic"] = []byte("token"), "magic"
	case mdm.MessageDeclarativeManagement:
		m["Endpoint"] = "tokens"
	case mdm.MessageGetToken:
		m["TokenServiceType"] = "com.apple.maid"
	}
	b, err := plist.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestEvents calls the service directly for every check-in type and a
// command report on every kind of channel and checks topic, event_id (the
// context's trace ID), ids, udid, enrollment_id and url_params.
func TestEvents(t *testing.T) {
	schema := loadSchema(t, "testdata/webhook/event.schema.json")
	rc := newReceiver(t, nil)
	store := inmem.New()
	w := New(rc.srv.URL, store, WithWorkers(1))
	t.Cleanup(func() { w.Close(context.Background()) })

	channels := []struct {
		name    string
		keys    map[string]any
		ids     IDs
		udid    string
		enrolID string
	}{
		{"device", map[string]any{"UDID": "U1"}, IDs{ID: "U1", Type: "Device"}, "U1", ""},
		{"user", map[string]any{"UDID": "U1", "UserID": "UID"}, IDs{ID: "U1:UID", ParentID: "U1", Type: "User"}, "U1", ""},
		{"shared iPad", map[string]any{"UDID": "U1", "UserID": mdm.SharediPadUserID, "UserShortName": "kim"}, IDs{ID: "U1:kim", ParentID: "U1", Type: "Shared iPad"}, "U1", ""},
		{"user enrollment device", map[string]any{"EnrollmentID": "E1"}, IDs{ID: "E1", Type: "User Enrollment (Device)"}, "", "E1"},
		{"user enrollment", map[string]any{"EnrollmentID": "E1", "EnrollmentUserID": "EU"}, IDs{ID: "E1:EU", ParentID: "E1", Type: "User Enrollment"}, "", "E1"},
	}
	types := []string{
		mdm.MessageAuthenticate, mdm.MessageTokenUpdate, mdm.MessageCheckOut,
		mdm.MessageUserAuthenticate, mdm.MessageSetBootstrapToken, mdm.MessageGetBootstrapToken,
		mdm.MessageDeclarativeManagement, mdm.MessageGetToken, "report",
	}
	n := 0
	for _, ch := range channels {
		for _, mt := range types {
			t.Run(ch.name+"/"+mt, func(t *testing.T) {
				traceID := "trace-" + ch.name + "-" + mt
				var params map[string]string
				if mt == mdm.MessageCheckOut {
					params = map[string]string{"a": "1"}
				}
				var msg any
				var err error
				if mt == "report" {
					keys := map[string]any{"Status": "Error", "CommandUUID": "C1"}
					for k, v := range ch.keys {
						keys[k] = v
					}
					raw, _ := plist.Marshal(keys)
					msg, err = mdm.DecodeCommandResults(raw)
				} else {
					msg, err = mdm.DecodeCheckin(checkinPlist(t, mt, ch.keys))
				}
				if err != nil {
					t.Fatalf("decoding: %v", err)
				}
				id, err := mdm.EnrollmentOf(msg).Resolve()
				if err != nil {
					t.Fatal(err)
				}
				r := &mdm.Request{Context: log.WithTraceID(context.Background(), traceID), EnrollID: id, Params: params}
				if res, ok := msg.(*mdm.CommandResults); ok {
					_, err = w.CommandAndReportResults(r, res)
				} else {
					_, err = w.Checkin(r, msg)
				}
				if err != nil {
					t.Fatalf("service error: %v", err)
				}
				n++
				d := rc.wait(t, n)[n-1]
				for _, err := range schema.validateJSON(d.body) {
					t.Errorf("schema: %v", err)
				}
				ev := decodeEvent(t, d)
				wantTopic := "mdm." + mt
				if mt == "report" {
					wantTopic = TopicConnect
				}
				if ev.Topic != wantTopic || ev.EventID != traceID {
					t.Errorf("topic, event_id = %q, %q; want %q, %q", ev.Topic, ev.EventID, wantTopic, traceID)
				}
				var gotIDs *IDs
				var udid, enrolID string
				var gotParams map[string]string
				var raw []byte
				if a := ev.AcknowledgeEvent; a != nil {
					gotIDs, udid, enrolID, gotParams, raw = a.IDs, a.UDID, a.EnrollmentID, a.URLParams, a.RawPayload
					if a.Status != "Error" || a.CommandUUID != "C1" {
						t.Errorf("status, command_uuid = %q, %q; want Error, C1", a.Status, a.CommandUUID)
					}
				} else if c := ev.CheckinEvent; c != nil {
					gotIDs, udid, enrolID, gotParams, raw = c.IDs, c.UDID, c.EnrollmentID, c.URLParams, c.RawPayload
					if (mt == mdm.MessageTokenUpdate) != (c.TokenUpdateTally != nil) {
						t.Errorf("token_update_tally = %v for %s", c.TokenUpdateTally, mt)
					}
				} else {
					t.Fatalf("event has neither checkin_event nor acknowledge_event: %s", d.body)
				}
				if gotIDs == nil || *gotIDs != ch.ids {
					t.Errorf("ids = %+v, want %+v", gotIDs, ch.ids)
				}
				if udid != ch.udid || enrolID != ch.enrolID {
					t.Errorf("udid, enrollment_id = %q, %q; want %q, %q", udid, enrolID, ch.udid, ch.enrolID)
				}
				if len(gotParams) != len(params) || gotParams["a"] != params["a"] {
					t.Errorf("url_params = %v, want %v", gotParams, params)
				}
				if !bytes.Equal(raw, mdm.RawOf(msg)) {
					t.Errorf("raw_payload differs from the message bytes")
				}
				var generic map[string]map[string]any
				json.Unmarshal(d.body, &generic)
				for _, sub := range generic {
					if _, ok := sub["url_params"]; ok && len(params) == 0 {
						t.Errorf("url_params present although the request had none: %s", d.body)
					}
				}
			})
		}
	}
}

// failingTally is a Store whose TokenUpdate tally always fails.
type failingTally struct{ *inmem.Storage }

func (failingTally) RetrieveTokenUpdateTally(context.Context, string) (int, error) {
	return 0, errors.New("tally store down")
}

// TestTallyError checks that a failed tally read still sends the event
// (without the tally) and reports the error.
func TestTallyError(t *testing.T) {
	rc := newReceiver(t, nil)
	w := New(rc.srv.URL, failingTally{inmem.New()})
	t.Cleanup(func() { w.Close(context.Background()) })
	msg, err := mdm.DecodeCheckin(checkinPlist(t, mdm.MessageTokenUpdate, map[string]any{"UDID": "U2"}))
	if err != nil {
		t.Fatal(err)
	}
	r := &mdm.Request{Context: context.Background(), EnrollID: &mdm.EnrollID{ID: "U2", Type: mdm.Device}}
	if _, err := w.Checkin(r, msg); err == nil {
		t.Error("have no error, want the tally read error")
	}
	ev := decodeEvent(t, rc.wait(t, 1)[0])
	if ev.CheckinEvent == nil || ev.CheckinEvent.TokenUpdateTally != nil {
		t.Errorf("want a TokenUpdate event without tally, have %+v", ev.CheckinEvent)
	}
}

func idleRequest(t *testing.T, udid string) (*mdm.Request, *mdm.CommandResults) {
	t.Helper()
	raw, _ := plist.Marshal(map[string]string{"UDID": udid, "Status": "Idle"})
	res, err := mdm.DecodeCommandResults(raw)
	if err != nil {
		t.Fatal(err)
	}
	return &mdm.Request{Context: context.Background(), EnrollID: &mdm.EnrollID{ID: udid, Type: mdm.Device}}, res
}

// TestRetries checks which answers are retried and how often.
func TestRetries(t *testing.T) {
	for _, tc := range []struct {
		name      string
		statuses  []int // answers in order; the last one repeats
		retries   int
		wantHits  int
		wantOK    bool
		wantInLog string
	}{
		{"5xx then success", []int{503, 500, 200}, 3, 3, true, ""},
		{"5xx until retries run out", []int{502}, 2, 3, false, "attempts=3"},
		{"4xx is not retried", []int{400}, 3, 1, false, "endpoint answered 400"},
		{"redirect is not followed", []int{302}, 3, 1, false, "endpoint answered 302"},
		{"no retries", []int{503}, 0, 1, false, "attempts=1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := newReceiver(t, func(n int, r *http.Request) int {
				if n <= len(tc.statuses) {
					return tc.statuses[n-1]
				}
				return tc.statuses[len(tc.statuses)-1]
			})
			logs := &logtest.Recorder{}
			w := New(rc.srv.URL, inmem.New(), WithRetries(tc.retries), WithBackoff(time.Millisecond), WithLogger(logs))
			r, res := idleRequest(t, "RETRY-1")
			if _, err := w.CommandAndReportResults(r, res); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(context.Background()); err != nil {
				t.Fatalf("close: %v", err)
			}
			if hits := rc.Hits(); hits != tc.wantHits {
				t.Errorf("endpoint hit %d times, want %d", hits, tc.wantHits)
			}
			failures := logs.Text("msg=webhook delivery failed", "topic=mdm.Connect", "id=RETRY-1")
			switch {
			case tc.wantOK && len(failures) > 0:
				t.Errorf("want success, have failure logs %v", failures)
			case !tc.wantOK && len(logs.Text("msg=webhook delivery failed", "topic=mdm.Connect", "id=RETRY-1", tc.wantInLog)) != 1:
				t.Errorf("want one failure log with topic, id and %q, have %v", tc.wantInLog, logs.Text())
			}
		})
	}
}

// TestCloseFlushes checks that Close delivers what is queued and that
// events after Close are refused.
func TestCloseFlushes(t *testing.T) {
	rc := newReceiver(t, func(int, *http.Request) int {
		time.Sleep(5 * time.Millisecond)
		return http.StatusOK
	})
	w := New(rc.srv.URL, inmem.New(), WithWorkers(2), WithQueueSize(100))
	for i := 0; i < 40; i++ {
		r, res := idleRequest(t, "FLUSH-"+string(rune('A'+i%26)))
		if _, err := w.CommandAndReportResults(r, res); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatalf("close: %v", err)
	}
	if hits := rc.Hits(); hits != 40 {
		t.Errorf("delivered %d events before Close returned, want 40", hits)
	}
	r, res := idleRequest(t, "LATE")
	if _, err := w.CommandAndReportResults(r, res); !errors.Is(err, ErrClosed) {
		t.Errorf("event after Close: err = %v, want ErrClosed", err)
	}
	if err := w.Close(context.Background()); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// deviceTraffic enrolls devices through h and sends rounds of Idle
// reports from all of them at once. It fails unless every answer is the
// expected one and arrives within limit, and returns the slowest answer.
func deviceTraffic(t *testing.T, h *harness, devices, rounds int, limit time.Duration) time.Duration {
	t.Helper()
	ctx := context.Background()
	var mu sync.Mutex
	var slowest time.Duration
	timed := func(f func() error) error {
		start := time.Now()
		err := f()
		d := time.Since(start)
		mu.Lock()
		slowest = max(slowest, d)
		mu.Unlock()
		if d > limit {
			return errors.New("answer took " + d.String())
		}
		return err
	}
	var wg sync.WaitGroup
	errc := make(chan error, devices*(rounds+2))
	for i := 0; i < devices; i++ {
		dev := h.device(t, simulator.NewUDID())
		cmd, _ := mdm.NewCommand("cmd-"+dev.UDID(), "ProfileList", nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errc <- timed(func() error { return dev.Enroll(ctx) })
			if _, err := h.store.EnqueueCommand(ctx, []string{dev.UDID()}, cmd); err != nil {
				errc <- err
				return
			}
			errc <- timed(func() error {
				got, err := dev.Channel.Idle(ctx)
				if err == nil && (got == nil || got.CommandUUID != cmd.CommandUUID) {
					err = errors.New("Idle did not return the queued command")
				}
				return err
			})
			for r := 1; r < rounds; r++ {
				errc <- timed(func() error {
					got, err := dev.Channel.Send(ctx, simulator.Acknowledge(cmd))
					if err == nil && got != nil {
						err = errors.New("unexpected command after acknowledging")
					}
					return err
				})
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			t.Errorf("device request: %v", err)
		}
	}
	return slowest
}

// TestStallingEndpoint: an endpoint that never answers must neither
// delay nor change device answers, the outbox bound drops the oldest
// events (logged), and Close with a deadline ends every goroutine and
// leaves the undelivered events in the outbox.
func TestStallingEndpoint(t *testing.T) {
	baseline := runtime.NumGoroutine()
	release := make(chan struct{})
	rc := newReceiver(t, func(_ int, r *http.Request) int {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		return http.StatusOK
	})
	h := newHarness(t, rc.srv.URL, WithTimeout(time.Minute), WithWorkers(2), WithQueueSize(8), withTrimInterval(10*time.Millisecond))
	slowest := deviceTraffic(t, h, 10, 5, 2*time.Second)
	t.Logf("slowest device answer with a stalled webhook: %v", slowest)
	deadline := time.Now().Add(5 * time.Second)
	for len(h.logs.Text("msg=webhook events dropped", "reason=queue_full")) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if len(h.logs.Text("msg=webhook events dropped", "reason=queue_full", "count=")) == 0 {
		t.Error("no dropped-event log, want the outbox bound reported")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := h.hook.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close on a stalled endpoint: err = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v, want about its 200ms deadline", d)
	}
	if st, _ := h.store.OutboxStats(context.Background()); st.Depth == 0 || st.Depth > 8 {
		t.Errorf("outbox after Close: %d events, want 1 to 8 (the bound) left for the next start", st.Depth)
	}
	close(release)
	rc.srv.Close()
	h.client.CloseIdleConnections()
	h.srv.Close()
	waitGoroutines(t, baseline)
}

// TestRefusingEndpoint: an endpoint that refuses connections is retried
// a bounded number of times, logged, and never affects devices; once it
// is found down the other events wait in the outbox without attempts.
func TestRefusingEndpoint(t *testing.T) {
	baseline := runtime.NumGoroutine()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String() + "/hook"
	ln.Close()
	h := newHarness(t, dead, WithRetries(2), WithBackoff(time.Millisecond), WithQueueSize(10000))
	slowest := deviceTraffic(t, h, 10, 5, 2*time.Second)
	t.Logf("slowest device answer with a refusing webhook: %v", slowest)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.hook.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
	failures := h.logs.Text("msg=webhook delivery failed", "attempts=3", "topic=mdm.", "id=")
	if len(failures) == 0 || len(failures) >= 10*(2+5) {
		t.Errorf("have %d delivery failure logs with topic, id and attempts=3, want some, fewer than the 70 events", len(failures))
	}
	if st, _ := h.store.OutboxStats(context.Background()); st.Depth != 10*(2+5) {
		t.Errorf("outbox after Close: %d events, want all 70 kept", st.Depth)
	}
	h.client.CloseIdleConnections()
	h.srv.Close()
	waitGoroutines(t, baseline)
}

// TestSign pins the signature format: base64 of HMAC-SHA256.
func TestSign(t *testing.T) {
	// Known answer from RFC 4231, test case 2.
	got := sign([]byte("Jefe"), []byte("what do ya want for nothing?"))
	raw, _ := base64.StdEncoding.DecodeString(got)
	const want = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
	if have := hex.EncodeToString(raw); have != want {
		t.Errorf("sign = %s, want %s", have, want)
	}
}
