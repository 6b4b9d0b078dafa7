package authproxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"sync"
	"testing"

	"github.com/nanomdm/nanomdm/certverify"
	"github.com/nanomdm/nanomdm/cryptoutil"
	mdmhttp "github.com/nanomdm/nanomdm/http"
	httpmdm "github.com/nanomdm/nanomdm/http/mdm"
	"github.com/nanomdm/nanomdm/log"
	"github.com/nanomdm/nanomdm/mdm/simulator"
	"github.com/nanomdm/nanomdm/storage"
)

// mapFinder finds enrollments in a map of certificate hashes.
type mapFinder struct {
	ids map[string]string
	err error
}

func (f *mapFinder) RetrieveEnrollmentIDByCertHash(_ context.Context, hash string) (string, error) {
	if f.err != nil {
		return "", f.err
	}
	id, ok := f.ids[hash]
	if !ok {
		return "", storage.ErrUnknownEnrollment
	}
	return id, nil
}

// upstream records what reaches it.
type upstream struct {
	*httptest.Server
	mu   sync.Mutex
	seen []*http.Request
	body [][]byte
}

func newUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.seen = append(u.seen, r)
		u.body = append(u.body, b)
		u.mu.Unlock()
		w.Header().Set("X-Upstream", "yes")
		w.WriteHeader(http.StatusCreated)
		w.Write([]byte("asset bytes"))
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.seen)
}

type fixture struct {
	srv      *httptest.Server
	up       *upstream
	finder   *mapFinder
	ca       *simulator.CA
	known    *simulator.Identity
	unknown  *simulator.Identity
	stranger *simulator.Identity // issued by another CA
}

// newFixture mounts the proxy as cmd does: trace logging, device
// identity, StripPrefix, proxy; upstreamURL overrides the live upstream.
func newFixture(t *testing.T, upstreamURL string) *fixture {
	t.Helper()
	f := &fixture{up: newUpstream(t)}
	var err error
	if f.ca, err = simulator.NewCA("proxy test CA"); err != nil {
		t.Fatal(err)
	}
	other, _ := simulator.NewCA("other CA")
	f.known, _ = f.ca.Issue("known")
	f.unknown, _ = f.ca.Issue("unknown")
	f.stranger, _ = other.Issue("stranger")
	f.finder = &mapFinder{ids: map[string]string{cryptoutil.CertHash(f.known.Cert): "DEVICE-UDID"}}
	// The stranger's hash is "known" too: only the CA check stops it.
	f.finder.ids[cryptoutil.CertHash(f.stranger.Cert)] = "STRANGER-UDID"
	verifier, err := certverify.NewPoolVerifier(f.ca.CertPEM(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if upstreamURL == "" {
		upstreamURL = f.up.URL + "/base"
	}
	target, _ := url.Parse(upstreamURL)
	mux := http.NewServeMux()
	mux.Handle("/authproxy/", httpmdm.IdentityMiddleware(http.StripPrefix("/authproxy", New(target, f.finder)), verifier))
	f.srv = httptest.NewServer(mdmhttp.TraceLoggingMiddleware(mux, log.Nop))
	t.Cleanup(f.srv.Close)
	return f
}

// request sends method path with body, signed by id (nil: unsigned).
func (f *fixture) request(t *testing.T, id *simulator.Identity, method, path string, body []byte) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(EnrollmentIDHeader, "SPOOFED")
	req.Header.Set(TraceIDHeader, "SPOOFED")
	if id != nil {
		sig, err := cryptoutil.SignMdmSignature(body, id.Cert, id.Key)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Mdm-Signature", sig)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestProxy(t *testing.T) {
	f := newFixture(t, "")
	body := []byte(`{"hello":"upstream"}`)
	resp := f.request(t, f.known, http.MethodPut, "/authproxy/assets/a1?v=2", body)
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated || string(got) != "asset bytes" || resp.Header.Get("X-Upstream") != "yes" {
		t.Fatalf("answer = %d %q (X-Upstream %q), want the upstream's 201 \"asset bytes\"", resp.StatusCode, got, resp.Header.Get("X-Upstream"))
	}
	if n := f.up.count(); n != 1 {
		t.Fatalf("upstream saw %d requests, want 1", n)
	}
	seen := f.up.seen[0]
	if seen.Method != http.MethodPut || seen.URL.Path != "/base/assets/a1" || seen.URL.RawQuery != "v=2" {
		t.Errorf("upstream saw %s %s?%s, want PUT /base/assets/a1?v=2", seen.Method, seen.URL.Path, seen.URL.RawQuery)
	}
	if !bytes.Equal(f.up.body[0], body) {
		t.Errorf("upstream body = %q, want %q", f.up.body[0], body)
	}
	if h := seen.Header.Values(EnrollmentIDHeader); len(h) != 1 || h[0] != "DEVICE-UDID" {
		t.Errorf("%s = %q, want [DEVICE-UDID] (the client's value replaced)", EnrollmentIDHeader, h)
	}
	if h := seen.Header.Values(TraceIDHeader); len(h) != 1 || !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(h[0]) {
		t.Errorf("%s = %q, want one 16-hex-digit trace ID", TraceIDHeader, h)
	}
	if seen.Header.Get("X-Forwarded-For") == "" {
		t.Error("X-Forwarded-For missing")
	}
}

// TestRefused checks that requests without a valid identity, or whose
// identity belongs to no enrollment, never reach the upstream.
func TestRefused(t *testing.T) {
	for _, tc := range []struct {
		name       string
		id         func(f *fixture) *simulator.Identity
		badSig     bool
		finderErr  error
		wantStatus int
	}{
		{"no signature", func(*fixture) *simulator.Identity { return nil }, false, nil, http.StatusBadRequest},
		{"signature over another body", func(f *fixture) *simulator.Identity { return f.known }, true, nil, http.StatusBadRequest},
		{"certificate from another CA", func(f *fixture) *simulator.Identity { return f.stranger }, false, nil, http.StatusBadRequest},
		{"certificate of no enrollment", func(f *fixture) *simulator.Identity { return f.unknown }, false, nil, http.StatusForbidden},
		{"lookup failure", func(f *fixture) *simulator.Identity { return f.known }, false, errors.New("db down"), http.StatusInternalServerError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, "")
			f.finder.err = tc.finderErr
			var resp *http.Response
			if tc.badSig {
				sig, _ := cryptoutil.SignMdmSignature([]byte("other"), f.known.Cert, f.known.Key)
				req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/authproxy/x", bytes.NewReader([]byte("body")))
				req.Header.Set("Mdm-Signature", sig)
				var err error
				if resp, err = http.DefaultClient.Do(req); err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
			} else {
				resp = f.request(t, tc.id(f), http.MethodPost, "/authproxy/x", []byte("body"))
			}
			if resp.StatusCode != tc.wantStatus {
				t.Errorf("status = %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			if n := f.up.count(); n != 0 {
				t.Errorf("upstream saw %d requests, want none", n)
			}
		})
	}
}

func TestUpstreamDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	f := newFixture(t, dead)
	resp := f.request(t, f.known, http.MethodGet, "/authproxy/x", nil)
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("status = %d, want 502", resp.StatusCode)
	}
}
