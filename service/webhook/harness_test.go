package webhook

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/certverify"
	mdmhttp "github.com/nanomdm/nanomdm/http"
	httpmdm "github.com/nanomdm/nanomdm/http/mdm"
	"github.com/nanomdm/nanomdm/log/logtest"
	"github.com/nanomdm/nanomdm/mdm/simulator"
	"github.com/nanomdm/nanomdm/service/certauth"
	"github.com/nanomdm/nanomdm/service/multi"
	"github.com/nanomdm/nanomdm/service/nanomdm"
	"github.com/nanomdm/nanomdm/storage/inmem"
)

// delivery is one request the receiver got.
type delivery struct {
	body   []byte
	header http.Header
}

// receiver is a webhook endpoint that records deliveries. answer, if
// set, decides the status of the n-th request (1-based).
type receiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	got    []delivery
	hits   int
	notify chan struct{}
	answer func(n int, r *http.Request) int
}

func newReceiver(t *testing.T, answer func(n int, r *http.Request) int) *receiver {
	t.Helper()
	rc := &receiver{notify: make(chan struct{}, 1<<16), answer: answer}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.hits++
		n := rc.hits
		rc.mu.Unlock()
		status := http.StatusOK
		if rc.answer != nil {
			status = rc.answer(n, r)
		}
		if status == http.StatusOK {
			rc.mu.Lock()
			rc.got = append(rc.got, delivery{body: body, header: r.Header.Clone()})
			rc.mu.Unlock()
			rc.notify <- struct{}{}
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

// wait blocks until n deliveries were accepted and returns them.
func (rc *receiver) wait(t *testing.T, n int) []delivery {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		rc.mu.Lock()
		if len(rc.got) >= n {
			out := append([]delivery(nil), rc.got...)
			rc.mu.Unlock()
			return out
		}
		have := len(rc.got)
		rc.mu.Unlock()
		select {
		case <-rc.notify:
		case <-deadline:
			t.Fatalf("receiver has %d deliveries, want %d", have, n)
		}
	}
}

func (rc *receiver) Hits() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.hits
}

// harness is the real MDM handler chain (trace logging, device identity,
// certauth, multi(core, webhook)) over in-memory storage.
type harness struct {
	srv    *httptest.Server
	store  *inmem.Storage
	ca     *simulator.CA
	hook   *Webhook
	logs   *logtest.Recorder
	client *http.Client
}

func newHarness(t *testing.T, hookURL string, opts ...Option) *harness {
	t.Helper()
	h := &harness{store: inmem.New(), logs: &logtest.Recorder{}}
	var err error
	if h.ca, err = simulator.NewCA("webhook test CA"); err != nil {
		t.Fatal(err)
	}
	verifier, err := certverify.NewPoolVerifier(h.ca.CertPEM(), nil)
	if err != nil {
		t.Fatal(err)
	}
	opts = append([]Option{WithLogger(h.logs.With("service", "webhook"))}, opts...)
	h.hook = New(hookURL, h.store, opts...)
	core := nanomdm.New(h.store)
	svc := certauth.New(multi.New(h.logs.With("service", "multi"), core, h.hook), h.store)
	handler := httpmdm.IdentityMiddleware(httpmdm.CheckinAndCommandHandler(svc), verifier)
	h.srv = httptest.NewServer(mdmhttp.TraceLoggingMiddleware(handler, h.logs.With("handler", "log")))
	h.client = &http.Client{Timeout: 30 * time.Second}
	t.Cleanup(func() {
		h.client.CloseIdleConnections()
		h.srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h.hook.Close(ctx)
	})
	return h
}

func (h *harness) transport(query string) *simulator.Transport {
	return &simulator.Transport{URL: h.srv.URL + "/mdm" + query, Client: h.client}
}

func (h *harness) device(t *testing.T, udid string) *simulator.Device {
	t.Helper()
	id, err := h.ca.Issue("device " + udid)
	if err != nil {
		t.Fatal(err)
	}
	return simulator.NewDeviceWithUDID(h.transport(""), id, udid)
}

// waitGoroutines waits until the goroutine count is back to at most
// baseline, failing with a stack dump if it does not get there.
func waitGoroutines(t *testing.T, baseline int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= baseline {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("have %d goroutines, want at most the baseline %d:\n%s", n, baseline, buf)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
