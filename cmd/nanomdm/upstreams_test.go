package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/mdm/simulator"
	"github.com/nanomdm/nanomdm/storage/storagetest"
)

// stallListener accepts TCP connections and never says a word, like a
// hung APNs endpoint. One goroutine serves all connections.
type stallListener struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func newStallListener(t *testing.T) *stallListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening: %v", err)
	}
	s := &stallListener{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *stallListener) close() {
	s.ln.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
	s.conns = nil
}

// openRequests counts the requests a fake upstream is still holding.
type openRequests struct {
	mu    sync.Mutex
	open  int
	seen  int
	empty chan struct{} // closed, and replaced, when open drops to 0
}

func newOpenRequests() *openRequests { return &openRequests{empty: make(chan struct{})} }

func (o *openRequests) start() {
	o.mu.Lock()
	o.open++
	o.seen++
	o.mu.Unlock()
}

func (o *openRequests) end() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.open--; o.open == 0 {
		close(o.empty)
		o.empty = make(chan struct{})
	}
}

// waitNone waits until no request is open, and returns how many came.
func (o *openRequests) waitNone(t *testing.T, timeout time.Duration) int {
	t.Helper()
	deadline := time.After(timeout)
	for {
		o.mu.Lock()
		open, seen, empty := o.open, o.seen, o.empty
		o.mu.Unlock()
		if open == 0 {
			return seen
		}
		select {
		case <-empty:
		case <-deadline:
			t.Fatalf("the stalled upstream still holds %d of the server's %d requests after %v", open, seen, timeout)
		}
	}
}

// TestUpstreamsStalled points the webhook, the DM server, the auth proxy
// and APNs at endpoints that never answer (and then at ones that refuse
// connections). Device check-ins and command reports are answered as fast
// as ever; a DM check-in and an auth-proxy request end when the device
// gives up, and the server's requests upstream end with them; an enqueue
// with push answers once the push timeout passes, with the command queued.
// Afterwards the stalled upstream holds none of the server's requests: the
// server let go of every one (its own goroutines with them).
func TestUpstreamsStalled(t *testing.T) {
	for _, mode := range []string{"stalled", "refused"} {
		t.Run(mode, func(t *testing.T) { testUpstreams(t, mode) })
	}
}

func testUpstreams(t *testing.T, mode string) {
	release := make(chan struct{})
	upstream := newOpenRequests()
	stalled := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstream.start()
		defer upstream.end()
		// Reading the body lets net/http watch the connection, so the
		// request's context ends when the server hangs up.
		io.Copy(io.Discard, r.Body)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer stalled.Close()
	defer close(release)
	apns := newStallListener(t)
	base, apnsURL := stalled.URL, "https://"+apns.ln.Addr().String()
	if mode == "refused" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listening: %v", err)
		}
		dead := ln.Addr().String()
		ln.Close()
		base, apnsURL = "http://"+dead, "https://"+dead
	}
	const pushTimeout = time.Second
	s, store := launch(t, launchConfig{storage: []string{"-storage", "inmem"}, extra: []string{
		"-webhook-url", base + "/hook", "-webhook-timeout", "1s", "-webhook-retries", "0",
		"-webhook-workers", "2", "-webhook-queue-size", "16",
		"-dm", base + "/dm/", "-auth-proxy-url", base + "/proxy/",
		"-apns-url", apnsURL, "-push-timeout", pushTimeout.String(),
	}})
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	tr := &simulator.Transport{URL: s.url + "/mdm", Client: client}
	topic := storagetest.NewTopic()
	certPEM, keyPEM := storagetest.NewPushCert(t, topic)
	if code, m := apiCall(t, s, http.MethodPut, "/v1/pushcert", append(certPEM, keyPEM...), true); code != http.StatusOK {
		t.Fatalf("uploading push certificate: %d %v", code, m)
	}
	var devs []*simulator.Device
	for i := 0; i < 4; i++ {
		id, _ := s.ca.Issue(fmt.Sprintf("upstream device %d", i))
		d := simulator.NewDevice(tr, id)
		d.Topic = topic
		if err := d.Enroll(context.Background()); err != nil {
			t.Fatalf("enrolling: %v", err)
		}
		devs = append(devs, d)
	}
	client.CloseIdleConnections()

	// Device traffic: every answer prompt, whatever the webhook does.
	ctx := context.Background()
	var slowest time.Duration
	for round := 0; round < 10; round++ {
		for _, d := range devs {
			start := time.Now()
			if err := d.Channel.TokenUpdate(ctx); err != nil {
				t.Fatalf("TokenUpdate with %s upstreams: %v", mode, err)
			}
			if _, err := d.Channel.Idle(ctx); err != nil {
				t.Fatalf("Idle with %s upstreams: %v", mode, err)
			}
			slowest = max(slowest, time.Since(start))
		}
	}
	t.Logf("%s upstreams: slowest TokenUpdate+Idle %v", mode, slowest)
	if slowest > time.Second {
		t.Errorf("%s upstreams: slowest TokenUpdate+Idle took %v, want under 1s", mode, slowest)
	}

	// DM and auth proxy: the device gives up after half a second (or the
	// refused upstream answers at once); either way the server lets go.
	impatient := &http.Client{Timeout: 500 * time.Millisecond, Transport: &http.Transport{}}
	itr := &simulator.Transport{URL: s.url + "/mdm", Client: impatient}
	for _, d := range devs {
		dm := simulator.NewDeviceWithUDID(itr, d.Identity, d.UDID())
		_, err := dm.Channel.Checkin(ctx, map[string]any{"MessageType": "DeclarativeManagement", "UDID": d.UDID(), "Endpoint": "tokens"})
		if mode == "refused" && simulator.StatusOf(err) != http.StatusInternalServerError {
			t.Errorf("DM check-in with the DM server down: have %v, want 500", err)
		}
		req, err := itr.NewRequest(ctx, d.Identity, nil, false)
		if err != nil {
			t.Fatalf("building auth proxy request: %v", err)
		}
		req.Method = http.MethodGet
		req.URL.Path = "/authproxy/x"
		resp, err := impatient.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if mode == "refused" && resp.StatusCode != http.StatusBadGateway {
				t.Errorf("auth proxy with the upstream down: have %d, want 502", resp.StatusCode)
			}
		} else if mode == "refused" {
			t.Errorf("auth proxy with the upstream down: %v, want 502", err)
		}
	}

	// Enqueue with push: the answer waits at most about the push timeout,
	// reports the push failure per ID, and the command is queued.
	cmd, _ := mdm.NewCommand("upstream-"+mode, "ProfileList", nil)
	start := time.Now()
	status, a := enqueue(t, s, []string{devs[0].UDID()}, cmd, "")
	took := time.Since(start)
	if status != http.StatusMultiStatus || a.Status[devs[0].UDID()].PushError == "" || a.Status[devs[0].UDID()].CommandError != "" {
		t.Errorf("enqueue with APNs %s: have %d %+v, want 207 with a push error", mode, status, a)
	}
	if took > pushTimeout+2*time.Second {
		t.Errorf("enqueue with APNs %s took %v, want about the push timeout %v", mode, took, pushTimeout)
	}
	wantCommands(t, devs[0].Channel, "upstream-"+mode)
	if n := len(pushInfo(t, store, devs[0].UDID())); n != 1 {
		t.Errorf("push info lost: %d", n)
	}

	// The webhook's stalled deliveries end at -webhook-timeout; DM and
	// auth proxy requests ended with the devices'. The stalled upstream
	// sees each request end when the server gives it up.
	seen := upstream.waitNone(t, 30*time.Second)
	if mode == "stalled" && seen == 0 {
		t.Errorf("the stalled upstream saw no request: the test no longer stalls anything")
	}
	if strings.Contains(s.logs.String(), "panic") {
		t.Errorf("the server logged a panic:\n%s", s.logs.String())
	}
}
