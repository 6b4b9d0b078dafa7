package nanopush_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/push"
	"github.com/nanomdm/nanomdm/push/nanopush"
	"github.com/nanomdm/nanomdm/push/nanopush/apnstest"
	"github.com/nanomdm/nanomdm/storage/storagetest"
)

// newCert returns a push certificate with its key for topic.
func newCert(t testing.TB, topic string) *tls.Certificate {
	t.Helper()
	pemCert, pemKey := storagetest.NewPushCert(t, topic)
	cert, err := tls.X509KeyPair(pemCert, pemKey)
	if err != nil {
		t.Fatalf("loading test push cert: %v", err)
	}
	return &cert
}

// newProvider returns a provider for srv with a fresh certificate,
// closed at the end of the test.
func newProvider(t testing.TB, srv *apnstest.Server, opts ...nanopush.Option) (*nanopush.Provider, *tls.Certificate) {
	t.Helper()
	cert := newCert(t, storagetest.NewTopic())
	opts = append([]nanopush.Option{nanopush.WithBaseURL(srv.URL), nanopush.WithRootCAs(srv.RootCAs())}, opts...)
	p, err := nanopush.New(cert, opts...)
	if err != nil {
		t.Fatalf("new provider: %v", err)
	}
	t.Cleanup(p.Close)
	return p, cert
}

// newPushes returns n pushes with random tokens and push magics.
func newPushes(n int) []*mdm.Push {
	out := make([]*mdm.Push, n)
	for i := range out {
		tok := make([]byte, 32)
		copy(tok, fmt.Sprintf("token-%06d-", i))
		copy(tok[16:], storagetest.RandomUUID())
		out[i] = &mdm.Push{Token: tok, PushMagic: storagetest.RandomUUID(), Topic: "com.apple.mgmt.test"}
	}
	return out
}

func tokenOf(p *mdm.Push) string { return hex.EncodeToString(p.Token) }

// checkNoLeak fails the test when, after cleanup, more goroutines run than
// before (with a little slack for runtime helpers), waiting for stragglers.
func checkNoLeak(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		var now int
		for time.Now().Before(deadline) {
			if now = runtime.NumGoroutine(); now <= before+2 {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		t.Errorf("goroutines: %d before, %d after cleanup\n%s", before, now, buf[:n])
	})
}

func TestPushSuccess(t *testing.T) {
	srv := apnstest.NewServer(t, nil)
	p, cert := newProvider(t, srv, nanopush.WithExpiration(time.Hour))
	pushes := newPushes(7)
	start := time.Now()
	res := p.Push(context.Background(), pushes)
	if len(res) != len(pushes) {
		t.Fatalf("results: have %d, want %d", len(res), len(pushes))
	}
	ids := map[string]bool{}
	for i, r := range res {
		if r.Err != nil || r.ID == "" {
			t.Errorf("push %d: have id %q, error %v; want an apns-id", i, r.ID, r.Err)
		}
		ids[r.ID] = true
	}
	if len(ids) != len(pushes) {
		t.Errorf("apns-ids: have %d distinct, want %d", len(ids), len(pushes))
	}
	got := map[string]apnstest.Push{}
	for _, sp := range srv.Pushes() {
		got[sp.Token] = sp
	}
	for _, pu := range pushes {
		sp, ok := got[tokenOf(pu)]
		if !ok {
			t.Errorf("server never received push to %s", tokenOf(pu))
			continue
		}
		if sp.PushMagic != pu.PushMagic {
			t.Errorf("push to %s: have magic %q, want %q", sp.Token, sp.PushMagic, pu.PushMagic)
		}
		if !bytes.Equal(sp.ClientCert.Raw, cert.Certificate[0]) {
			t.Errorf("push to %s: client certificate is not the push certificate", sp.Token)
		}
		exp, err := strconv.ParseInt(sp.Expiration, 10, 64)
		if want := start.Add(time.Hour).Unix(); err != nil || exp < want-1 || exp > want+60 {
			t.Errorf("push to %s: have apns-expiration %q, want about %d", sp.Token, sp.Expiration, want)
		}
	}
	if n := srv.Connections(); n != 1 {
		t.Errorf("connections: have %d, want 1 (HTTP/2 multiplexes)", n)
	}
}

func TestNoExpirationByDefault(t *testing.T) {
	srv := apnstest.NewServer(t, nil)
	p, _ := newProvider(t, srv)
	if res := p.Push(context.Background(), newPushes(1)); res[0].Err != nil {
		t.Fatalf("push: %v", res[0].Err)
	}
	if have := srv.Pushes()[0].Expiration; have != "" {
		t.Errorf("apns-expiration: have %q, want no header", have)
	}
}

func TestAPNsErrorsPerToken(t *testing.T) {
	pushes := newPushes(10)
	bad, gone := tokenOf(pushes[3]), tokenOf(pushes[7])
	srv := apnstest.NewServer(t, func(p *apnstest.Push) apnstest.Reply {
		switch p.Token {
		case bad:
			return apnstest.Reply{Status: http.StatusBadRequest, Reason: "BadDeviceToken"}
		case gone:
			return apnstest.Reply{Status: http.StatusGone, Reason: "Unregistered"}
		}
		return apnstest.Reply{}
	})
	p, _ := newProvider(t, srv)
	res := p.Push(context.Background(), pushes)
	for i, r := range res {
		tok := tokenOf(pushes[i])
		var ae *nanopush.Error
		switch tok {
		case bad:
			if !errors.As(r.Err, &ae) || ae.StatusCode != 400 || ae.Reason != "BadDeviceToken" || !errors.Is(r.Err, nanopush.ErrBadDeviceToken) {
				t.Errorf("push %d: have %v, want APNs error 400 BadDeviceToken", i, r.Err)
			}
			if r.ID != "" {
				t.Errorf("push %d failed but has apns-id %q as result", i, r.ID)
			}
		case gone:
			if !errors.As(r.Err, &ae) || ae.StatusCode != 410 || ae.Reason != "Unregistered" || !errors.Is(r.Err, nanopush.ErrUnregistered) {
				t.Errorf("push %d: have %v, want APNs error 410 Unregistered", i, r.Err)
			} else if ae.Timestamp.IsZero() || ae.APNsID == "" {
				t.Errorf("push %d: 410 error without timestamp or apns-id: %+v", i, ae)
			}
		default:
			if r.Err != nil || r.ID == "" {
				t.Errorf("push %d: have id %q, error %v; want an apns-id", i, r.ID, r.Err)
			}
		}
	}
	var ae *nanopush.Error
	if errors.As(res[3].Err, &ae); ae == nil || !strings.Contains(ae.Error(), "BadDeviceToken") {
		t.Errorf("error text %v does not name the APNs reason", res[3].Err)
	}
}

// wantAllPushed fails the test unless every push has an apns-id.
func wantAllPushed(t *testing.T, res []push.Response) {
	t.Helper()
	for i, r := range res {
		if r.Err != nil || r.ID == "" {
			t.Errorf("push %d: have id %q, error %v; want an apns-id", i, r.ID, r.Err)
		}
	}
}

func TestGoAwayMidBatch(t *testing.T) {
	checkNoLeak(t)
	var n atomic.Int64
	srv := apnstest.NewServer(t, func(*apnstest.Push) apnstest.Reply {
		// Every 25th push ends its connection with a GOAWAY while the
		// other workers have streams in flight or about to start.
		return apnstest.Reply{GoAway: n.Add(1)%25 == 0, Delay: time.Millisecond}
	})
	p, _ := newProvider(t, srv, nanopush.WithWorkers(8))
	pushes := newPushes(200)
	res := p.Push(context.Background(), pushes)
	if len(res) != len(pushes) {
		t.Fatalf("results: have %d, want %d", len(res), len(pushes))
	}
	// Streams the server never processed are retried on a new connection
	// by the transport, so every push succeeds.
	wantAllPushed(t, res)
	if c := srv.Connections(); c < 2 {
		t.Errorf("connections: have %d, want more than 1 after GOAWAY", c)
	}
	wantAllPushed(t, p.Push(context.Background(), newPushes(10)))
	p.Close()
	srv.Close()
}

func TestResetStream(t *testing.T) {
	checkNoLeak(t)
	pushes := newPushes(20)
	reset := tokenOf(pushes[5])
	srv := apnstest.NewServer(t, func(p *apnstest.Push) apnstest.Reply {
		return apnstest.Reply{Reset: p.Token == reset}
	})
	p, _ := newProvider(t, srv)
	res := p.Push(context.Background(), pushes)
	for i, r := range res {
		if i == 5 {
			if r.Err == nil {
				t.Errorf("push %d (stream reset): have id %q, want an error", i, r.ID)
			}
			continue
		}
		if r.Err != nil {
			t.Errorf("push %d: have error %v, want an apns-id (only push 5 was reset)", i, r.Err)
		}
	}
	p.Close()
	srv.Close()
}

func TestDroppedConnection(t *testing.T) {
	checkNoLeak(t)
	var n atomic.Int64
	srv := apnstest.NewServer(t, func(*apnstest.Push) apnstest.Reply {
		return apnstest.Reply{Drop: n.Add(1) == 10, Delay: time.Millisecond}
	})
	p, _ := newProvider(t, srv)
	pushes := newPushes(50)
	res := p.Push(context.Background(), pushes)
	var failed int
	for _, r := range res {
		if r.Err != nil {
			failed++
		} else if r.ID == "" {
			t.Errorf("push succeeded without apns-id")
		}
	}
	// The dropped push and the streams in flight with it fail (a POST is
	// not retried: APNs may have delivered it); the rest go through a
	// new connection.
	if failed == 0 || failed > 5 {
		t.Errorf("failed pushes: have %d, want between 1 and the 5 in flight", failed)
	}
	if c := srv.Connections(); c < 2 {
		t.Errorf("connections: have %d, want a reconnect", c)
	}
	wantAllPushed(t, p.Push(context.Background(), newPushes(10)))
	p.Close()
	srv.Close()
}

func TestStallingServerTimesOut(t *testing.T) {
	checkNoLeak(t)
	srv := apnstest.NewServer(t, func(*apnstest.Push) apnstest.Reply { return apnstest.Reply{Stall: true} })
	p, _ := newProvider(t, srv, nanopush.WithTimeout(200*time.Millisecond))
	start := time.Now()
	res := p.Push(context.Background(), newPushes(10))
	// 10 pushes, 5 workers, 200ms each: about 400ms.
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("push to a stalling server took %v, want about 400ms", d)
	}
	for i, r := range res {
		if !errors.Is(r.Err, context.DeadlineExceeded) {
			t.Errorf("push %d: have id %q, error %v; want %v", i, r.ID, r.Err, context.DeadlineExceeded)
		}
	}
	p.Close()
	srv.Close()
}

func TestStallingServerGivesUpOnLargeCall(t *testing.T) {
	checkNoLeak(t)
	var answered atomic.Int64
	srv := apnstest.NewServer(t, func(*apnstest.Push) apnstest.Reply {
		// A few answers first, then nothing.
		return apnstest.Reply{Stall: answered.Add(1) > 20}
	})
	p, _ := newProvider(t, srv, nanopush.WithTimeout(100*time.Millisecond))
	start := time.Now()
	res := p.Push(context.Background(), newPushes(2000))
	// One timeout per push would take 2000*100ms/5 = 40s; giving up after
	// 10 timeouts in a row takes about 2 rounds of 100ms.
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("2000 pushes to a stalling server took %v, want well under 5s", d)
	}
	var ok, timeout, gaveUp int
	for i, r := range res {
		switch {
		case r.Err == nil:
			ok++
		case errors.Is(r.Err, context.DeadlineExceeded):
			timeout++
		case errors.Is(r.Err, nanopush.ErrUnresponsive):
			gaveUp++
		default:
			t.Errorf("push %d: unexpected error %v", i, r.Err)
		}
	}
	if ok != 20 || timeout < 10 || timeout > 20 || ok+timeout+gaveUp != 2000 {
		t.Errorf("results: %d ok, %d timed out, %d given up; want 20 ok, 10-20 timed out, the rest given up", ok, timeout, gaveUp)
	}
	p.Close()
	srv.Close()
}

func TestContextCanceled(t *testing.T) {
	srv := apnstest.NewServer(t, nil)
	p, _ := newProvider(t, srv)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for i, r := range p.Push(ctx, newPushes(20)) {
		if !errors.Is(r.Err, context.Canceled) {
			t.Errorf("push %d: have id %q, error %v; want %v", i, r.ID, r.Err, context.Canceled)
		}
	}
	if n := srv.Count(); n != 0 {
		t.Errorf("server received %d pushes after cancel, want 0", n)
	}
}

func TestWorkersBoundAcrossCalls(t *testing.T) {
	var inFlight, peak atomic.Int64
	srv := apnstest.NewServer(t, func(*apnstest.Push) apnstest.Reply {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			old := peak.Load()
			if n <= old || peak.CompareAndSwap(old, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
		return apnstest.Reply{}
	})
	p, _ := newProvider(t, srv, nanopush.WithWorkers(3))
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wantAllPushed(t, p.Push(context.Background(), newPushes(12)))
		}()
	}
	wg.Wait()
	if have := peak.Load(); have != 3 {
		t.Errorf("peak pushes in flight: have %d, want 3", have)
	}
}

func TestMissingTokenOrMagic(t *testing.T) {
	srv := apnstest.NewServer(t, nil)
	p, _ := newProvider(t, srv)
	pushes := newPushes(3)
	pushes[0].Token = nil
	pushes[1].PushMagic = ""
	res := p.Push(context.Background(), pushes)
	if res[0].Err == nil || res[1].Err == nil || res[2].Err != nil {
		t.Errorf("results: have %+v, want errors for the push without token and the one without magic only", res)
	}
	if n := srv.Count(); n != 1 {
		t.Errorf("server received %d pushes, want 1", n)
	}
}

func TestClosedProvider(t *testing.T) {
	srv := apnstest.NewServer(t, nil)
	p, _ := newProvider(t, srv)
	p.Close()
	if r := p.Push(context.Background(), newPushes(1)); !errors.Is(r[0].Err, nanopush.ErrClosed) {
		t.Errorf("push after Close: have %v, want %v", r[0].Err, nanopush.ErrClosed)
	}
}

// connectProxy is an HTTPS proxy (CONNECT) that tunnels every request to
// target, whatever host it names, and records the hosts asked for.
func connectProxy(t *testing.T, target string) (*httptest.Server, func() []string) {
	var mu sync.Mutex
	var hosts []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		mu.Lock()
		hosts = append(hosts, r.Host+" "+r.Header.Get("Proxy-Authorization"))
		mu.Unlock()
		up, err := net.Dial("tcp", target)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer up.Close()
		down, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer down.Close()
		rw.WriteString("HTTP/1.1 200 Connection established\r\n\r\n")
		rw.Flush()
		done := make(chan struct{}, 2)
		go func() { io.Copy(up, rw); done <- struct{}{} }()
		go func() { io.Copy(down, up); done <- struct{}{} }()
		<-done
	}))
	t.Cleanup(srv.Close)
	return srv, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), hosts...)
	}
}

func TestProxyFromEnvironment(t *testing.T) {
	srv := apnstest.NewServer(t, nil)
	u, _ := url.Parse(srv.URL)
	proxy, hosts := connectProxy(t, u.Host)
	t.Setenv("HTTPS_PROXY", proxy.URL)
	t.Setenv("https_proxy", "")
	t.Setenv("NO_PROXY", "")
	t.Setenv("no_proxy", "")
	// The test certificate is valid for *.example.com; the proxy, not
	// DNS, takes the request to the server.
	apnsHost := "apns.example.com:" + u.Port()
	p, err := nanopush.New(newCert(t, storagetest.NewTopic()),
		nanopush.WithBaseURL("https://"+apnsHost), nanopush.WithRootCAs(srv.RootCAs()))
	if err != nil {
		t.Fatalf("new provider: %v", err)
	}
	defer p.Close()
	wantAllPushed(t, p.Push(context.Background(), newPushes(3)))
	if have := hosts(); len(have) != 1 || have[0] != apnsHost+" " {
		t.Errorf("proxy CONNECTs: have %q, want one to %s", have, apnsHost)
	}
}

func TestProxyWithBasicAuth(t *testing.T) {
	srv := apnstest.NewServer(t, nil)
	u, _ := url.Parse(srv.URL)
	proxy, hosts := connectProxy(t, u.Host)
	proxyURL, _ := url.Parse(proxy.URL)
	proxyURL.User = url.UserPassword("push", "s3cret")
	p, _ := newProvider(t, srv, nanopush.WithProxy(func(*url.URL) (*url.URL, error) { return proxyURL, nil }))
	wantAllPushed(t, p.Push(context.Background(), newPushes(2)))
	// base64("push:s3cret")
	if want := u.Host + " Basic cHVzaDpzM2NyZXQ="; len(hosts()) != 1 || hosts()[0] != want {
		t.Errorf("proxy CONNECTs: have %q, want one %q", hosts(), want)
	}
}

func TestNewRefusesBadSettings(t *testing.T) {
	cert := newCert(t, storagetest.NewTopic())
	for _, tc := range []struct {
		name string
		cert *tls.Certificate
		opts []nanopush.Option
	}{
		{"nil cert", nil, nil},
		{"cert without key", &tls.Certificate{Certificate: cert.Certificate}, nil},
		{"http base URL", cert, []nanopush.Option{nanopush.WithBaseURL("http://api.push.apple.com")}},
		{"base URL with path", cert, []nanopush.Option{nanopush.WithBaseURL("https://api.push.apple.com/3/device")}},
		{"zero workers", cert, []nanopush.Option{nanopush.WithWorkers(0)}},
		{"zero timeout", cert, []nanopush.Option{nanopush.WithTimeout(0)}},
		{"negative expiration", cert, []nanopush.Option{nanopush.WithExpiration(-time.Second)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if p, err := nanopush.New(tc.cert, tc.opts...); err == nil {
				p.Close()
				t.Errorf("New: have no error, want one")
			}
		})
	}
}
