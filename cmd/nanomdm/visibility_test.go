package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/nanomdm/nanomdm/http/api"
	"github.com/nanomdm/nanomdm/http/authproxy"
	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/mdm/simulator"
)

// rawCall sends an API request with the test key (or without
// credentials when auth is false) and returns status and body.
func rawCall(t *testing.T, method, target string, auth bool) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth {
		req.SetBasicAuth("nanomdm", testAPIKey)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// scrape reads a metrics endpoint and parses the text format.
type scrape map[string]*dto.MetricFamily

func scrapeMetrics(t *testing.T, target string, auth bool) scrape {
	t.Helper()
	status, body := rawCall(t, http.MethodGet, target, auth)
	if status != http.StatusOK {
		t.Fatalf("GET %s: status %d: %s", target, status, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parsing metrics: %v\n%s", err, body)
	}
	return fams
}

// value returns the value of the series of name whose labels include
// labels ("k", "v", …): a counter's or gauge's value, a histogram's
// sample count. A missing series is 0.
func (s scrape) value(name string, labels ...string) float64 {
	fam := s[name]
	if fam == nil {
		return 0
	}
	var sum float64
	for _, m := range fam.Metric {
		have := map[string]string{}
		for _, lp := range m.Label {
			have[lp.GetName()] = lp.GetValue()
		}
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			match = match && have[labels[i]] == labels[i+1]
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}

// labelValues returns every label value of the nanomdm_ series.
func (s scrape) labelValues() []string {
	var out []string
	for name, fam := range s {
		if !strings.HasPrefix(name, "nanomdm_") {
			continue
		}
		for _, m := range fam.Metric {
			for _, lp := range m.Label {
				out = append(out, lp.GetValue())
			}
		}
	}
	return out
}

// TestMetricsAfterEndToEnd runs a small fleet through the real server
// and checks that /metrics counted exactly what happened: check-ins,
// reports, enqueues, deliveries, pushes, webhook deliveries and retries,
// requests by route and status, with no enrollment ID in any label.
func TestMetricsAfterEndToEnd(t *testing.T) {
	// The webhook endpoint fails its first request once: one retry.
	var mu sync.Mutex
	var hookCalls int
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		hookCalls++
		first := hookCalls == 1
		mu.Unlock()
		if first {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer hook.Close()

	s := startServer(t, "-storage", "inmem", "-webhook-url", hook.URL, "-webhook-retries", "2")
	ctx := context.Background()
	tr := &simulator.Transport{URL: s.url + "/mdm"}
	var devices []*simulator.Device
	var ids []string
	for i := 0; i < 3; i++ {
		d := enrolled(t, s, tr, fmt.Sprintf("metrics %d", i))
		devices = append(devices, d)
		ids = append(ids, d.UDID())
	}
	for i, rt := range []string{"DeviceInformation", "ProfileList"} {
		cmd, err := mdm.NewCommand(fmt.Sprintf("metrics-cmd-%d", i), rt, nil)
		if err != nil {
			t.Fatal(err)
		}
		if status, a := enqueue(t, s, ids, cmd, "?nopush=1"); status != http.StatusOK {
			t.Fatalf("enqueue: status %d %+v", status, a)
		}
	}
	// Device 0 acknowledges both commands, device 1 fails the first and
	// acknowledges the second, device 2 never asks.
	if got, err := devices[0].Channel.Drain(ctx, simulator.Acknowledge, 10); err != nil || len(got) != 2 {
		t.Fatalf("device 0 drain: %d commands, %v", len(got), err)
	}
	failFirst := func(cmd *mdm.Command) simulator.Report {
		if cmd.CommandUUID == "metrics-cmd-0" {
			return simulator.ErrorAnswer(cmd)
		}
		return simulator.Acknowledge(cmd)
	}
	if got, err := devices[1].Channel.Drain(ctx, failFirst, 10); err != nil || len(got) != 2 {
		t.Fatalf("device 1 drain: %d commands, %v", len(got), err)
	}

	// Pushes: no push certificate for the devices' topic, no push data
	// for an unknown ID. Nothing reaches APNs.
	unknown := simulator.NewUDID()
	if status, body := rawCall(t, http.MethodPost, s.url+"/v1/push/"+strings.Join(append(ids, unknown), ","), true); status != http.StatusInternalServerError {
		t.Errorf("push: status %d, want 500 (nothing pushed): %s", status, body)
	}

	// Inspection, health and some failures.
	for _, c := range []struct {
		method, path string
		auth         bool
		want         int
	}{
		{"GET", "/v1/enrollments", true, 200},
		{"GET", "/v1/enrollments", false, 401},
		{"GET", "/v1/enrollments/" + unknown + "/queue", true, 404},
		{"GET", "/v1/enrollments/" + ids[2] + "/queue", true, 200},
		{"GET", "/v1/commands/metrics-cmd-0/results", true, 200},
		{"GET", "/healthz", false, 200},
		{"GET", "/readyz", false, 200},
		{"GET", "/no/such/route", false, 404},
		{"GET", "/metrics", false, 401},
	} {
		if status, body := rawCall(t, c.method, s.url+c.path, c.auth); status != c.want {
			t.Errorf("%s %s: status %d, want %d: %s", c.method, c.path, status, c.want, body)
		}
	}

	// Webhook delivery is asynchronous: wait for all 12 events (3×2
	// check-ins, 6 reports).
	var m scrape
	deadline := time.Now().Add(15 * time.Second)
	for {
		m = scrapeMetrics(t, s.url+"/metrics", true)
		if m.value("nanomdm_webhook_deliveries_total") >= 12 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}

	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"nanomdm_checkins_total", []string{"message_type", "Authenticate"}, 3},
		{"nanomdm_checkins_total", []string{"message_type", "TokenUpdate"}, 3},
		{"nanomdm_checkins_total", []string{"message_type", "CheckOut"}, 0},
		{"nanomdm_command_reports_total", []string{"status", "Idle"}, 2},
		{"nanomdm_command_reports_total", []string{"status", "Acknowledged"}, 3},
		{"nanomdm_command_reports_total", []string{"status", "Error"}, 1},
		{"nanomdm_command_reports_total", []string{"status", "NotNow"}, 0},
		{"nanomdm_commands_enqueued_total", nil, 6},
		{"nanomdm_commands_delivered_total", nil, 4},
		{"nanomdm_pushes_sent_total", nil, 0},
		{"nanomdm_push_failures_total", []string{"reason", "no_push_cert"}, 3},
		{"nanomdm_push_failures_total", []string{"reason", "no_push_info"}, 1},
		{"nanomdm_webhook_deliveries_total", nil, 12},
		{"nanomdm_webhook_retries_total", nil, 1},
		{"nanomdm_webhook_failures_total", nil, 0},
		{"nanomdm_storage_errors_total", nil, 0},
		{"nanomdm_http_requests_total", []string{"route", "/mdm", "code", "200"}, 12},
		{"nanomdm_http_requests_total", []string{"route", "/mdm"}, 12},
		{"nanomdm_http_requests_total", []string{"route", "/v1/enqueue/", "code", "200"}, 2},
		{"nanomdm_http_requests_total", []string{"route", "/v1/push/", "code", "500"}, 1},
		{"nanomdm_http_requests_total", []string{"route", "/v1/enrollments", "code", "200"}, 1},
		{"nanomdm_http_requests_total", []string{"route", "/v1/enrollments", "code", "401"}, 1},
		{"nanomdm_http_requests_total", []string{"route", "/v1/enrollments/{id}/queue", "code", "404"}, 1},
		{"nanomdm_http_requests_total", []string{"route", "/v1/enrollments/{id}/queue", "code", "200"}, 1},
		{"nanomdm_http_requests_total", []string{"route", "/v1/commands/{uuid}/results", "code", "200"}, 1},
		{"nanomdm_http_requests_total", []string{"route", "/healthz", "code", "200"}, 1},
		{"nanomdm_http_requests_total", []string{"route", "/readyz", "code", "200"}, 1},
		{"nanomdm_http_requests_total", []string{"route", "unmatched", "code", "404"}, 1},
		{"nanomdm_http_requests_total", []string{"route", "/metrics", "code", "401"}, 1},
		{"nanomdm_http_request_duration_seconds", []string{"route", "/mdm"}, 12},
		{"nanomdm_http_requests_in_flight", nil, 1}, // the scrape itself
		{"nanomdm_storage_operation_duration_seconds", []string{"op", "StoreAuthenticate"}, 3},
		{"nanomdm_storage_operation_duration_seconds", []string{"op", "EnqueueCommand"}, 2},
		{"nanomdm_build_info", []string{"version", version}, 1},
	} {
		if have := m.value(c.name, c.labels...); have != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, have, c.want)
		}
	}
	if m["go_goroutines"] == nil || m["process_cpu_seconds_total"] == nil {
		t.Errorf("runtime and process metrics missing")
	}
	for _, v := range m.labelValues() {
		for _, id := range append(ids, unknown, "metrics-cmd-0") {
			if strings.Contains(v, id) {
				t.Errorf("label value %q holds an ID: labels must stay bounded", v)
			}
		}
	}
}

// TestMetricsListen serves /metrics on a listener of its own, without
// credentials, and not on the main listener.
func TestMetricsListen(t *testing.T) {
	addr := freeAddr(t)
	s := startServer(t, "-storage", "inmem", "-metrics-listen", addr)
	m := scrapeMetrics(t, "http://"+addr+"/metrics", false)
	if m["nanomdm_http_requests_total"] == nil && m["nanomdm_checkins_total"] == nil {
		t.Errorf("metrics listener serves no nanomdm metrics")
	}
	if status, _ := rawCall(t, http.MethodGet, s.url+"/metrics", true); status != http.StatusNotFound {
		t.Errorf("/metrics on the main listener with -metrics-listen: status %d, want 404", status)
	}
}

// TestInspectionAPI checks the inspection routes end to end on every
// non-SQL backend: listing, a queue with a NotNow command, results and
// clearing a queue.
func TestInspectionAPI(t *testing.T) {
	for _, storage := range []string{"file", "inmem"} {
		t.Run(storage, func(t *testing.T) {
			s := startServer(t, "-storage", storage)
			ctx := context.Background()
			tr := &simulator.Transport{URL: s.url + "/mdm"}
			a, b := enrolled(t, s, tr, "inspect a"), enrolled(t, s, tr, "inspect b")
			ids := []string{a.UDID(), b.UDID()}
			sort.Strings(ids)
			var cmds []*mdm.Command
			for i, rt := range []string{"DeviceInformation", "ProfileList"} {
				cmd, err := mdm.NewCommand(fmt.Sprintf("inspect-%s-%d", storage, i), rt, nil)
				if err != nil {
					t.Fatal(err)
				}
				enqueue(t, s, ids, cmd, "?nopush=1")
				cmds = append(cmds, cmd)
			}
			// a: NotNow for the first command; b: acknowledges both.
			first, err := a.Channel.Idle(ctx)
			if err != nil || first == nil || first.CommandUUID != cmds[0].CommandUUID {
				t.Fatalf("device a: first command %v, %v", first, err)
			}
			if _, err := a.Channel.Send(ctx, simulator.NotNowAnswer(first)); err != nil {
				t.Fatalf("device a NotNow: %v", err)
			}
			if _, err := b.Channel.Drain(ctx, simulator.Acknowledge, 10); err != nil {
				t.Fatalf("device b: %v", err)
			}

			var list api.EnrollmentsResponse
			getJSON(t, s.url+"/v1/enrollments?limit=1", &list)
			if len(list.Enrollments) != 1 || list.Enrollments[0].ID != ids[0] || list.NextCursor != ids[0] {
				t.Fatalf("first page: %+v", list)
			}
			cursor := list.NextCursor
			list = api.EnrollmentsResponse{}
			getJSON(t, s.url+"/v1/enrollments?limit=1&cursor="+url.QueryEscape(cursor), &list)
			if len(list.Enrollments) != 1 || list.Enrollments[0].ID != ids[1] || list.NextCursor != "" {
				t.Fatalf("second page: %+v", list)
			}
			e := list.Enrollments[0]
			if e.Type != "Device" || !e.Enabled || e.SerialNumber == "" || e.Topic != simulator.DefaultTopic || e.TokenUpdateTally != 1 || e.LastSeen == nil {
				t.Errorf("enrollment: %+v", e)
			}

			var q api.QueueResponse
			getJSON(t, s.url+"/v1/enrollments/"+a.UDID()+"/queue", &q)
			if len(q.Commands) != 2 || q.Commands[0].Status != mdm.StatusNotNow || q.Commands[0].NotNowCount != 1 ||
				q.Commands[1].CommandUUID != cmds[1].CommandUUID || q.Commands[1].Status != "" {
				t.Errorf("queue of a: %+v", q)
			}

			var res api.CommandResultsResponse
			getJSON(t, s.url+"/v1/commands/"+cmds[0].CommandUUID+"/results", &res)
			statuses := map[string]string{}
			for _, r := range res.Results {
				statuses[r.ID] = r.Status
				if _, err := mdm.DecodeCommandResults(r.Result); err != nil {
					t.Errorf("result of %s is not the report plist: %v", r.ID, err)
				}
			}
			if statuses[a.UDID()] != mdm.StatusNotNow || statuses[b.UDID()] != mdm.StatusAcknowledged || len(statuses) != 2 {
				t.Errorf("results: %+v", res)
			}

			if status, body := rawCall(t, http.MethodDelete, s.url+"/v1/enrollments/"+a.UDID()+"/queue", true); status != http.StatusOK {
				t.Fatalf("clearing queue: status %d: %s", status, body)
			}
			q = api.QueueResponse{}
			getJSON(t, s.url+"/v1/enrollments/"+a.UDID()+"/queue", &q)
			if len(q.Commands) != 0 {
				t.Errorf("queue after clearing: %+v", q)
			}
			if next, err := a.Channel.Idle(ctx); err != nil || next != nil {
				t.Errorf("device a after clearing: next %v, %v; want none", next, err)
			}
		})
	}
}

func getJSON(t *testing.T, target string, v any) {
	t.Helper()
	status, body := rawCall(t, http.MethodGet, target, true)
	if status != http.StatusOK {
		t.Fatalf("GET %s: status %d: %s", target, status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v: %s", target, err, body)
	}
}

// TestAuthProxyEndToEnd proxies an enrolled device's request to an
// upstream, which learns the enrollment, on both non-SQL backends; an
// identity bound to no enrollment is refused.
func TestAuthProxyEndToEnd(t *testing.T) {
	for _, storage := range []string{"file", "inmem"} {
		t.Run(storage, func(t *testing.T) {
			type seen struct{ path, id, trace, body string }
			got := make(chan seen, 4)
			upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				got <- seen{r.URL.Path, r.Header.Get(authproxy.EnrollmentIDHeader), r.Header.Get(authproxy.TraceIDHeader), string(body)}
				io.WriteString(w, "upstream answer")
			}))
			defer upstream.Close()
			s := startServer(t, "-storage", storage, "-auth-proxy-url", upstream.URL+"/base")
			dev := enrolled(t, s, &simulator.Transport{URL: s.url + "/mdm"}, "proxied")

			proxy := &simulator.Transport{URL: s.url + "/authproxy/some/path"}
			answer, err := proxy.Send(context.Background(), dev.Identity, []byte("hello"), false)
			if err != nil || string(answer) != "upstream answer" {
				t.Fatalf("proxied request: %q, %v", answer, err)
			}
			select {
			case g := <-got:
				if g.path != "/base/some/path" || g.id != dev.UDID() || g.body != "hello" || len(g.trace) != 16 {
					t.Errorf("upstream saw %+v; want path /base/some/path, enrollment %s, the body and a trace ID", g, dev.UDID())
				}
			default:
				t.Fatal("upstream saw nothing")
			}

			stranger, err := s.ca.Issue("never enrolled")
			if err != nil {
				t.Fatal(err)
			}
			_, err = proxy.Send(context.Background(), stranger, []byte("hello"), false)
			if se, ok := err.(*simulator.ErrStatus); !ok || se.Status != http.StatusForbidden {
				t.Errorf("unenrolled identity: %v, want status 403", err)
			}
		})
	}
}
