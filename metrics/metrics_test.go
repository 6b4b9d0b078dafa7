package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/push"
	"github.com/nanomdm/nanomdm/push/nanopush"
	"github.com/nanomdm/nanomdm/service/webhook"
	"github.com/nanomdm/nanomdm/storage"
	"github.com/nanomdm/nanomdm/storage/inmem"
	"github.com/nanomdm/nanomdm/storage/storagetest"
)

func counter(t *testing.T, c prometheus.Collector, want float64, what string) {
	t.Helper()
	if have := testutil.ToFloat64(c); have != want {
		t.Errorf("%s = %v, want %v", what, have, want)
	}
}

func TestPushFailureReason(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&nanopush.Error{StatusCode: 400, Reason: "BadDeviceToken"}, "BadDeviceToken"},
		{fmt.Errorf("topic x: %w", &nanopush.Error{StatusCode: 410, Reason: "Unregistered"}), "Unregistered"},
		{&nanopush.Error{StatusCode: 410}, "Unregistered"},
		{&nanopush.Error{StatusCode: 403, Reason: "something new from Apple"}, "apns_other"},
		{&nanopush.Error{StatusCode: 500}, "apns_other"},
		{push.ErrNoPushInfo, "no_push_info"},
		{fmt.Errorf("retrieving push cert of topic %q: %w", "t", storage.ErrNoPushCert), "no_push_cert"},
		{nanopush.ErrUnresponsive, "unresponsive"},
		{nanopush.ErrClosed, "provider_closed"},
		{fmt.Errorf("post: %w", context.DeadlineExceeded), "timeout"},
		{context.Canceled, "canceled"},
		{errors.New("tls: bad certificate"), "other"},
	} {
		if have := PushFailureReason(tc.err); have != tc.want {
			t.Errorf("PushFailureReason(%v) = %q, want %q", tc.err, have, tc.want)
		}
	}
}

// fakePusher answers with fixed results.
type fakePusher struct {
	results map[string]*push.Response
	err     error
}

func (f *fakePusher) Push(context.Context, []string) (map[string]*push.Response, error) {
	return f.results, f.err
}

func TestPusher(t *testing.T) {
	m := New("test")
	p := m.Pusher(&fakePusher{results: map[string]*push.Response{
		"a": {ID: "apns-1"},
		"b": {ID: "apns-2"},
		"c": {Err: &nanopush.Error{StatusCode: 400, Reason: "BadDeviceToken"}},
		"d": {Err: push.ErrNoPushInfo},
	}})
	if _, err := p.Push(context.Background(), []string{"a", "b", "c", "d"}); err != nil {
		t.Fatal(err)
	}
	counter(t, m.pushesSent, 2, "pushes sent")
	counter(t, m.pushFailures.WithLabelValues("BadDeviceToken"), 1, "BadDeviceToken failures")
	counter(t, m.pushFailures.WithLabelValues("no_push_info"), 1, "no_push_info failures")

	// A lookup failure fails every ID.
	failing := m.Pusher(&fakePusher{err: errors.New("database down")})
	if _, err := failing.Push(context.Background(), []string{"a", "b", "c"}); err == nil {
		t.Error("lookup failure: no error passed on")
	}
	counter(t, m.pushFailures.WithLabelValues("storage"), 3, "storage failures")
}

// brokenStore fails some calls.
type brokenStore struct {
	*inmem.Storage
}

var errDown = errors.New("database down")

func (brokenStore) RetrieveNextCommand(*mdm.Request, bool) (*mdm.Command, error) {
	return nil, errDown
}

func (brokenStore) Ping(context.Context) error { return errDown }

func TestStorage(t *testing.T) {
	m := New("test")
	s := m.Storage(brokenStore{inmem.New()})
	dev := storagetest.NewDevice(t)
	dev.Enroll(t, s)

	// Expected answers are not failures.
	if err := s.StoreCommandReport(dev.Request(), dev.Report(t, mdm.StatusAcknowledged, "nope")); !errors.Is(err, storage.ErrUnknownCommand) {
		t.Fatalf("report of unknown command: %v", err)
	}
	errs, err := s.EnqueueCommand(context.Background(), []string{dev.ID(), "unknown", dev.ID()}, storagetest.NewCommand(t, "ProfileList"))
	if err != nil || errs["unknown"] == nil {
		t.Fatalf("enqueue: %v, %v", errs, err)
	}
	counter(t, m.enqueued, 1, "commands enqueued")
	if _, err := s.RetrieveNextCommand(dev.Request(), false); !errors.Is(err, errDown) {
		t.Fatalf("next command: %v", err)
	}
	if err := s.Ping(context.Background()); !errors.Is(err, errDown) {
		t.Fatalf("ping: %v", err)
	}
	counter(t, m.storageErrors.WithLabelValues("RetrieveNextCommand"), 1, "RetrieveNextCommand errors")
	counter(t, m.storageErrors.WithLabelValues("Ping"), 1, "Ping errors")
	counter(t, m.storageErrors.WithLabelValues("StoreCommandReport"), 0, "StoreCommandReport errors")
	counter(t, m.storageErrors.WithLabelValues("EnqueueCommand"), 0, "EnqueueCommand errors")
	if n := testutil.CollectAndCount(m.storageSeconds); n < 5 {
		t.Errorf("storage timings: %d methods timed, want at least 5", n)
	}
}

// nopService answers every check-in with its message's type name and
// every report with next, and keeps the last check-in message.
type nopService struct {
	next *mdm.Command
	last any
}

func (s *nopService) Checkin(_ *mdm.Request, msg any) ([]byte, error) {
	s.last = msg
	return []byte(mdm.MessageTypeOf(msg)), nil
}

func (s *nopService) CommandAndReportResults(*mdm.Request, *mdm.CommandResults) (*mdm.Command, error) {
	return s.next, nil
}

// TestService counts check-ins by message type through the one Checkin
// method (a type it does not know as "other"), passing each message and
// answer on unchanged, and command reports by status.
func TestService(t *testing.T) {
	t.Parallel()
	m := New("test")
	next := &nopService{}
	svc := m.Service(next)
	dev := storagetest.NewDevice(t)
	msgs := []any{dev.Authenticate(t), dev.Authenticate(t), dev.TokenUpdate(t), &mdm.CheckOut{},
		&mdm.UserAuthenticate{}, &mdm.SetBootstrapToken{}, &mdm.GetBootstrapToken{},
		&mdm.DeclarativeManagement{}, &mdm.GetToken{}, &struct{}{}}
	for _, msg := range msgs {
		answer, err := svc.Checkin(dev.Request(), msg)
		if err != nil || next.last != msg || string(answer) != mdm.MessageTypeOf(msg) {
			t.Errorf("%T: have answer %q, error %v, next saw %T; want the next service's answer for the same message",
				msg, answer, err, next.last)
		}
	}
	svc.CommandAndReportResults(dev.Request(), &mdm.CommandResults{Status: mdm.StatusIdle})
	next.next = storagetest.NewCommand(t, "ProfileList")
	svc.CommandAndReportResults(dev.Request(), &mdm.CommandResults{Status: "MadeUp"})
	counter(t, m.checkins.WithLabelValues(mdm.MessageAuthenticate), 2, "Authenticate check-ins")
	for _, mt := range knownMessageTypes[1:] {
		counter(t, m.checkins.WithLabelValues(mt), 1, mt+" check-ins")
	}
	counter(t, m.checkins.WithLabelValues("other"), 1, "check-ins of no known type")
	counter(t, m.reports.WithLabelValues(mdm.StatusIdle), 1, "Idle reports")
	counter(t, m.reports.WithLabelValues("other"), 1, "reports of unknown status")
	counter(t, m.delivered, 1, "commands delivered")
}

func TestObserveWebhook(t *testing.T) {
	m := New("test")
	var o webhook.Observer = m
	for _, oc := range []webhook.Outcome{webhook.Delivered, webhook.Delivered, webhook.Retried, webhook.Failed, webhook.DroppedFull, webhook.DroppedExpired, webhook.DroppedStore, webhook.DroppedClosed} {
		o.ObserveWebhook(oc)
	}
	counter(t, m.webhookDeliveries, 2, "deliveries")
	counter(t, m.webhookRetries, 1, "retries")
	for _, r := range []string{"failed", "queue_full", "expired", "store_error", "closed"} {
		counter(t, m.webhookFailures.WithLabelValues(r), 1, "failures "+r)
	}
}

func TestHTTPMiddleware(t *testing.T) {
	m := New("test")
	mux := http.NewServeMux()
	mux.Handle("GET /v1/things/{id}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") == "missing" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, "ok")
	}))
	srv := httptest.NewServer(m.HTTPMiddleware(mux))
	defer srv.Close()
	for _, p := range []string{"/v1/things/a", "/v1/things/b", "/v1/things/missing", "/elsewhere"} {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	counter(t, m.requests.WithLabelValues("GET /v1/things/{id}", "200"), 2, "200s")
	counter(t, m.requests.WithLabelValues("GET /v1/things/{id}", "404"), 1, "404s")
	counter(t, m.requests.WithLabelValues("unmatched", "404"), 1, "unmatched")
	counter(t, m.inFlight, 0, "in flight after the requests")

	// The handler serves the text format from the own registry only.
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`nanomdm_http_requests_total{code="200",route="GET /v1/things/{id}"} 2`,
		`nanomdm_build_info{version="test"} 1`,
		`nanomdm_checkins_total{message_type="Authenticate"} 0`,
		"go_goroutines",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics output lacks %q", want)
		}
	}
	if strings.Contains(body, "/v1/things/a") {
		t.Error("metrics output holds a raw path")
	}
}

// TestWatchOutbox: the outbox gauges show the stats of the store at
// scrape time.
func TestWatchOutbox(t *testing.T) {
	m := New("test")
	oldest := time.Now().Add(-90 * time.Second)
	m.WatchOutbox(func(context.Context) (storage.OutboxStats, error) {
		return storage.OutboxStats{Depth: 42, Oldest: oldest}, nil
	})
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	have := map[string]float64{}
	for _, f := range families {
		for _, mt := range f.GetMetric() {
			if mt.GetGauge() != nil {
				have[f.GetName()] = mt.GetGauge().GetValue()
			}
		}
	}
	if v := have["nanomdm_webhook_outbox_depth"]; v != 42 {
		t.Errorf("outbox depth: have %v, want 42", v)
	}
	if v := have["nanomdm_webhook_outbox_oldest_age_seconds"]; v < 89 || v > 120 {
		t.Errorf("oldest age: have %v, want about 90", v)
	}
}
