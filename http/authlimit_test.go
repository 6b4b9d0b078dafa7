package http

import (
	"bytes"
	"encoding/json"
	"fmt"
	nethttp "net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/log/gokit"
)

// fakeClock is a settable time source for the limiter.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func authRequest(addr, pass string) *nethttp.Request {
	r := httptest.NewRequest(nethttp.MethodGet, "/v1/x", nil)
	r.RemoteAddr = addr
	if pass != "" {
		r.SetBasicAuth(APIUsername, pass)
	}
	return r
}

func serveAuth(h nethttp.Handler, r *nethttp.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

// TestAuthFailureLimit: a client may fail limit-1 times and still get in;
// at limit failures it is locked out (429, even with the right key) until
// the window has passed; other clients are unaffected; a success clears
// the count.
func TestAuthFailureLimit(t *testing.T) {
	const limit = 3
	const window = time.Minute
	clock := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	l := NewAuthFailureLimiter(limit, window)
	l.now = clock.now
	ok := nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) { w.WriteHeader(nethttp.StatusNoContent) })
	h := BasicAuthMiddleware(ok, APIUsername, "secret", "nanomdm", WithAuthFailureLimiter(l))
	const attacker, other = "192.0.2.1:1000", "192.0.2.2:1000"

	// Just under: limit-1 failures, then the right key works and clears
	// the count.
	for i := 0; i < limit-1; i++ {
		if code := serveAuth(h, authRequest(attacker, "wrong")).Code; code != nethttp.StatusUnauthorized {
			t.Fatalf("failure %d: have %d, want 401", i+1, code)
		}
	}
	if code := serveAuth(h, authRequest(attacker, "secret")).Code; code != nethttp.StatusNoContent {
		t.Fatalf("right key after %d failures: have %d, want 204", limit-1, code)
	}
	// Cleared: limit-1 more failures are still answered 401.
	for i := 0; i < limit-1; i++ {
		if code := serveAuth(h, authRequest(attacker, "wrong")).Code; code != nethttp.StatusUnauthorized {
			t.Fatalf("failure %d after a success: have %d, want 401", i+1, code)
		}
	}
	// At the limit: locked out, even with the right key, from another
	// port of the same host too.
	if code := serveAuth(h, authRequest(attacker, "wrong")).Code; code != nethttp.StatusUnauthorized {
		t.Fatalf("failure %d: have %d, want 401", limit, code)
	}
	clock.t = clock.t.Add(10 * time.Second)
	for _, r := range []*nethttp.Request{authRequest(attacker, "secret"), authRequest("192.0.2.1:2000", "wrong"), authRequest(attacker, "")} {
		rec := serveAuth(h, r)
		if rec.Code != nethttp.StatusTooManyRequests {
			t.Errorf("locked out client: have %d, want 429", rec.Code)
		}
		if ra, err := strconv.Atoi(rec.Header().Get("Retry-After")); err != nil || ra != 50 {
			t.Errorf("Retry-After: have %q, want 50", rec.Header().Get("Retry-After"))
		}
	}
	if code := serveAuth(h, authRequest(other, "secret")).Code; code != nethttp.StatusNoContent {
		t.Errorf("another client: have %d, want 204", code)
	}
	// The window (from the first failure) ends: admitted again.
	clock.t = clock.t.Add(window)
	if code := serveAuth(h, authRequest(attacker, "secret")).Code; code != nethttp.StatusNoContent {
		t.Errorf("after the window: have %d, want 204", code)
	}
}

// TestAuthFailureLimiterBounded floods the limiter with more addresses
// than it tracks: memory stays bounded, the newcomers share one counter,
// and tracked clients keep their own.
func TestAuthFailureLimiterBounded(t *testing.T) {
	clock := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	l := NewAuthFailureLimiter(2, time.Minute)
	l.now = clock.now
	h := BasicAuthMiddleware(nethttp.NotFoundHandler(), APIUsername, "secret", "nanomdm", WithAuthFailureLimiter(l))
	for i := 0; i < maxTrackedClients+500; i++ {
		serveAuth(h, authRequest(fmt.Sprintf("[2001:db8::%x]:1", i), "wrong"))
	}
	if n := len(l.clients); n > maxTrackedClients+1 {
		t.Errorf("tracking %d clients, want at most %d", n, maxTrackedClients+1)
	}
	if code := serveAuth(h, authRequest("[2001:db8::ffff:1]:1", "secret")).Code; code != nethttp.StatusTooManyRequests {
		t.Errorf("new client while the table is full and the overflow locked: have %d, want 429", code)
	}
	if code := serveAuth(h, authRequest("[2001:db8::1]:1", "secret")).Code; code != nethttp.StatusNotFound {
		t.Errorf("tracked client with one failure: have %d, want it admitted", code)
	}
	// Once the window passes, expired entries make room again.
	clock.t = clock.t.Add(time.Minute)
	serveAuth(h, authRequest("198.51.100.1:1", "wrong"))
	if _, ok := l.clients["198.51.100.1"]; !ok {
		t.Errorf("new client not tracked after the old entries expired")
	}
}

// TestAuthFailureLimiterOff: a zero limit gives no limiter and the
// middleware answers 401 forever.
func TestAuthFailureLimiterOff(t *testing.T) {
	if l := NewAuthFailureLimiter(0, time.Minute); l != nil {
		t.Fatalf("limit 0: have a limiter, want nil")
	}
	h := BasicAuthMiddleware(nethttp.NotFoundHandler(), APIUsername, "secret", "nanomdm", WithAuthFailureLimiter(nil))
	for i := 0; i < 100; i++ {
		if code := serveAuth(h, authRequest("192.0.2.9:1", "wrong")).Code; code != nethttp.StatusUnauthorized {
			t.Fatalf("failure %d without a limiter: have %d, want 401", i+1, code)
		}
	}
}

// TestBasicAuthCredentials: only the exact user and key get through;
// prefixes, extensions, case changes, an empty key, another user and
// missing or malformed credentials are all 401 with a challenge.
func TestBasicAuthCredentials(t *testing.T) {
	h := BasicAuthMiddleware(nethttp.NotFoundHandler(), APIUsername, "secret", "nanomdm")
	for _, tc := range []struct {
		name       string
		user, pass string
		header     string // raw Authorization, when set
		want       int
	}{
		{name: "right", user: APIUsername, pass: "secret", want: nethttp.StatusNotFound},
		{name: "prefix of the key", user: APIUsername, pass: "secre", want: nethttp.StatusUnauthorized},
		{name: "key extended", user: APIUsername, pass: "secretX", want: nethttp.StatusUnauthorized},
		{name: "case changed", user: APIUsername, pass: "Secret", want: nethttp.StatusUnauthorized},
		{name: "empty key", user: APIUsername, pass: "", want: nethttp.StatusUnauthorized},
		{name: "other user", user: "admin", pass: "secret", want: nethttp.StatusUnauthorized},
		{name: "no credentials", want: nethttp.StatusUnauthorized},
		{name: "not base64", header: "Basic !!!", want: nethttp.StatusUnauthorized},
		{name: "bearer", header: "Bearer secret", want: nethttp.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(nethttp.MethodGet, "/v1/x", nil)
			switch {
			case tc.header != "":
				r.Header.Set("Authorization", tc.header)
			case tc.user != "" || tc.pass != "":
				r.SetBasicAuth(tc.user, tc.pass)
			}
			rec := serveAuth(h, r)
			if rec.Code != tc.want {
				t.Fatalf("have %d, want %d", rec.Code, tc.want)
			}
			if tc.want == nethttp.StatusUnauthorized && rec.Header().Get("WWW-Authenticate") != `Basic realm="nanomdm"` {
				t.Errorf("WWW-Authenticate: have %q", rec.Header().Get("WWW-Authenticate"))
			}
		})
	}
}

// TestAuthLockoutLogged checks that the failure that locks a client out
// writes one log line naming the address, and that later refusals do not.
func TestAuthLockoutLogged(t *testing.T) {
	var logs bytes.Buffer
	l := NewAuthFailureLimiter(2, time.Minute)
	h := BasicAuthMiddleware(nethttp.NotFoundHandler(), APIUsername, "secret", "nanomdm",
		WithAuthFailureLimiter(l), WithAuthLogger(gokit.New(&logs, false)))
	const addr = "192.0.2.7:1000"
	serveAuth(h, authRequest(addr, "wrong"))
	if logs.Len() != 0 {
		t.Errorf("one failure (limit 2) logged %q, want nothing yet", logs.String())
	}
	serveAuth(h, authRequest(addr, "wrong"))
	for i := 0; i < 3; i++ {
		if code := serveAuth(h, authRequest(addr, "wrong")).Code; code != nethttp.StatusTooManyRequests {
			t.Fatalf("after the lock-out: have %d, want 429", code)
		}
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "locked out") || !strings.Contains(lines[0], "addr=192.0.2.7") {
		t.Errorf("log %q, want one line saying 192.0.2.7 is locked out", logs.String())
	}
}

// TestNotFoundJSON checks that a path no route serves is a JSON 404 and
// that routed paths are served as before.
func TestNotFoundJSON(t *testing.T) {
	mux := nethttp.NewServeMux()
	mux.Handle("/v1/enqueue/", nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) { w.WriteHeader(nethttp.StatusNoContent) }))
	h := NotFoundJSONMiddleware(mux)
	rec := serveAuth(h, httptest.NewRequest(nethttp.MethodGet, "/v1/enqueu/x", nil))
	var answer struct{ Error string }
	if err := json.Unmarshal(rec.Body.Bytes(), &answer); rec.Code != nethttp.StatusNotFound || err != nil ||
		rec.Header().Get("Content-Type") != "application/json" || !strings.Contains(answer.Error, "/v1/enqueu/x") {
		t.Errorf("unknown path: have %d %q %s, want a JSON 404 naming the path", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
	if code := serveAuth(h, httptest.NewRequest(nethttp.MethodGet, "/v1/enqueue/x", nil)).Code; code != nethttp.StatusNoContent {
		t.Errorf("routed path: have %d, want the route's 204", code)
	}
}
