package api_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/nanomdm/nanomdm/http/api"
	"github.com/nanomdm/nanomdm/storage"
	"github.com/nanomdm/nanomdm/storage/inmem"
	"github.com/nanomdm/nanomdm/storage/storagetest"
)

// unlockCall is what the fake unlock service received.
type unlockCall struct {
	method, contentType string
	query, form         url.Values
	clientCert          []byte
}

// unlockService is a TLS server that requires a client certificate, as
// Apple's does, and records each call.
type unlockService struct {
	*httptest.Server
	mu     sync.Mutex
	calls  []unlockCall
	status int
	answer string
}

func newUnlockService(t *testing.T) *unlockService {
	t.Helper()
	s := &unlockService{status: http.StatusOK, answer: `{"status":"ok"}`}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		form, _ := url.ParseQuery(string(body))
		c := unlockCall{method: r.Method, contentType: r.Header.Get("Content-Type"), query: r.URL.Query(), form: form}
		if len(r.TLS.PeerCertificates) > 0 {
			c.clientCert = r.TLS.PeerCertificates[0].Raw
		}
		s.mu.Lock()
		s.calls = append(s.calls, c)
		status, answer := s.status, s.answer
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		w.Write([]byte(answer))
	}))
	s.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

func (s *unlockService) recorded() []unlockCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]unlockCall(nil), s.calls...)
}

type unlockFixture struct {
	svc     *unlockService
	handler http.Handler
	topic   string
	cert    *tls.Certificate
}

func newUnlockFixture(t *testing.T, store storage.PushCertRetriever) *unlockFixture {
	t.Helper()
	f := &unlockFixture{svc: newUnlockService(t), topic: storagetest.NewTopic()}
	if store == nil {
		s := inmem.New()
		certPEM, keyPEM := storagetest.NewPushCert(t, f.topic)
		if err := s.StorePushCert(context.Background(), certPEM, keyPEM); err != nil {
			t.Fatal(err)
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		f.cert, store = &cert, s
	}
	target := api.EscrowKeyUnlockTarget{URL: f.svc.URL + "/deviceservicesworkers/escrowKeyUnlock", RootCAs: poolOf(f.svc)}
	f.handler = api.EscrowKeyUnlockHandler(store, target)
	return f
}

func poolOf(s *unlockService) *x509.CertPool {
	return s.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
}

func (f *unlockFixture) post(t *testing.T, form url.Values) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/v1/escrowkeyunlock", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	f.handler.ServeHTTP(rec, req)
	return rec
}

func fullForm(topic string) url.Values {
	return url.Values{
		"topic": {topic}, "serial": {"C02XXXXXXXXX"}, "productType": {"MacBookPro18,3"},
		"escrowKey": {"ABCD-EFGH-IJKL"}, "orgName": {"Example Org"}, "guid": {"1234-5678"},
		"imei": {"35 123456 789012 3"}, "meid": {"A0000012345678"},
	}
}

func TestEscrowKeyUnlock(t *testing.T) {
	f := newUnlockFixture(t, nil)
	rec := f.post(t, fullForm(f.topic))
	if rec.Code != http.StatusOK || rec.Body.String() != `{"status":"ok"}` {
		t.Fatalf("answer = %d %q, want the service's 200 and body", rec.Code, rec.Body)
	}
	calls := f.svc.recorded()
	if len(calls) != 1 {
		t.Fatalf("service got %d calls, want 1", len(calls))
	}
	c := calls[0]
	if c.method != http.MethodPost || c.contentType != "application/x-www-form-urlencoded" {
		t.Errorf("service got %s with Content-Type %q, want a POSTed form", c.method, c.contentType)
	}
	if !bytes.Equal(c.clientCert, f.cert.Leaf.Raw) {
		t.Error("service's client certificate is not the topic's push certificate")
	}
	wantQuery := url.Values{"serial": {"C02XXXXXXXXX"}, "productType": {"MacBookPro18,3"}, "imei": {"35 123456 789012 3"}, "meid": {"A0000012345678"}}
	if c.query.Encode() != wantQuery.Encode() {
		t.Errorf("query = %s, want %s", c.query.Encode(), wantQuery.Encode())
	}
	wantForm := url.Values{"escrowKey": {"ABCD-EFGH-IJKL"}, "orgName": {"Example Org"}, "guid": {"1234-5678"}}
	if c.form.Encode() != wantForm.Encode() {
		t.Errorf("form = %s, want %s", c.form.Encode(), wantForm.Encode())
	}
}

func TestEscrowKeyUnlockPassesStatusBack(t *testing.T) {
	f := newUnlockFixture(t, nil)
	f.svc.mu.Lock()
	f.svc.status, f.svc.answer = http.StatusBadRequest, `{"error":"invalid escrow key"}`
	f.svc.mu.Unlock()
	rec := f.post(t, fullForm(f.topic))
	if rec.Code != http.StatusBadRequest || rec.Body.String() != `{"error":"invalid escrow key"}` {
		t.Errorf("answer = %d %q, want the service's 400 and body", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want the service's", ct)
	}
}

func TestEscrowKeyUnlockMissingFields(t *testing.T) {
	f := newUnlockFixture(t, nil)
	for _, tc := range []struct {
		drop []string
		want string
	}{
		{[]string{"serial"}, "serial"},
		{[]string{"topic", "guid"}, "topic, guid"},
		{[]string{"productType", "escrowKey", "orgName"}, "productType, escrowKey, orgName"},
	} {
		form := fullForm(f.topic)
		for _, d := range tc.drop {
			form.Del(d)
		}
		rec := f.post(t, form)
		var answer struct{ Error string }
		json.Unmarshal(rec.Body.Bytes(), &answer)
		if rec.Code != http.StatusBadRequest || !strings.HasSuffix(answer.Error, ": "+tc.want) {
			t.Errorf("without %v: answer = %d %q, want 400 naming %q", tc.drop, rec.Code, answer.Error, tc.want)
		}
	}
	if n := len(f.svc.recorded()); n != 0 {
		t.Errorf("service got %d calls, want none", n)
	}
}

// failingCerts fails every push certificate lookup with err.
type failingCerts struct{ err error }

func (f failingCerts) RetrievePushCert(context.Context, string) (*tls.Certificate, string, error) {
	return nil, "", f.err
}

func (f failingCerts) IsPushCertStale(context.Context, string, string) (bool, error) {
	return false, f.err
}

func TestEscrowKeyUnlockErrors(t *testing.T) {
	t.Run("unknown topic", func(t *testing.T) {
		f := newUnlockFixture(t, nil)
		if rec := f.post(t, fullForm("com.apple.mgmt.unknown")); rec.Code != http.StatusBadRequest {
			t.Errorf("status = %d, want 400", rec.Code)
		}
	})
	t.Run("storage failure", func(t *testing.T) {
		f := newUnlockFixture(t, failingCerts{errors.New("db down")})
		if rec := f.post(t, fullForm("com.apple.mgmt.x")); rec.Code != http.StatusInternalServerError {
			t.Errorf("status = %d, want 500", rec.Code)
		}
	})
	t.Run("no push cert", func(t *testing.T) {
		f := newUnlockFixture(t, failingCerts{storage.ErrNoPushCert})
		if rec := f.post(t, fullForm("com.apple.mgmt.x")); rec.Code != http.StatusBadRequest {
			t.Errorf("status = %d, want 400", rec.Code)
		}
	})
	t.Run("service unreachable", func(t *testing.T) {
		f := newUnlockFixture(t, nil)
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		dead := "https://" + ln.Addr().String()
		ln.Close()
		h := api.EscrowKeyUnlockHandler(certOf(f), api.EscrowKeyUnlockTarget{URL: dead, RootCAs: poolOf(f.svc)})
		req := httptest.NewRequest(http.MethodPost, "/v1/escrowkeyunlock", strings.NewReader(fullForm(f.topic).Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusBadGateway {
			t.Errorf("status = %d, want 502", rec.Code)
		}
	})
	t.Run("untrusted service", func(t *testing.T) {
		f := newUnlockFixture(t, nil)
		h := api.EscrowKeyUnlockHandler(certOf(f), api.EscrowKeyUnlockTarget{URL: f.svc.URL})
		req := httptest.NewRequest(http.MethodPost, "/v1/escrowkeyunlock", strings.NewReader(fullForm(f.topic).Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusBadGateway || len(f.svc.recorded()) != 0 {
			t.Errorf("status = %d with %d calls, want 502 and no call reaching a server with an unknown certificate", rec.Code, len(f.svc.recorded()))
		}
	})
}

// certOf returns a store holding only f's push certificate.
func certOf(f *unlockFixture) storage.PushCertRetriever { return staticCert{f.topic, f.cert} }

type staticCert struct {
	topic string
	cert  *tls.Certificate
}

func (s staticCert) RetrievePushCert(_ context.Context, topic string) (*tls.Certificate, string, error) {
	if topic != s.topic {
		return nil, "", storage.ErrNoPushCert
	}
	return s.cert, "t", nil
}

func (s staticCert) IsPushCertStale(context.Context, string, string) (bool, error) { return false, nil }
