package mdm_test

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/groob/plist"

	"github.com/nanomdm/nanomdm/certverify"
	"github.com/nanomdm/nanomdm/cryptoutil"
	httpmdm "github.com/nanomdm/nanomdm/http/mdm"
	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/mdm/simulator"
	"github.com/nanomdm/nanomdm/service"
)

// stubService answers from fields so each status row can be provoked.
type stubService struct {
	err     error
	body    []byte
	next    *mdm.Command
	lastReq *mdm.Request
}

func (s *stubService) Checkin(r *mdm.Request, _ any) ([]byte, error) {
	s.lastReq = r
	return s.body, s.err
}
func (s *stubService) CommandAndReportResults(r *mdm.Request, _ *mdm.CommandResults) (*mdm.Command, error) {
	s.lastReq = r
	return s.next, s.err
}

type fixture struct {
	ca       *simulator.CA
	id       *simulator.Identity
	verifier *certverify.PoolVerifier
}

func makeFixture() (*fixture, error) {
	ca, err := simulator.NewCA("test CA")
	if err != nil {
		return nil, err
	}
	id, err := ca.Issue("device")
	if err != nil {
		return nil, err
	}
	v, err := certverify.NewPoolVerifier(ca.CertPEM(), nil)
	if err != nil {
		return nil, err
	}
	return &fixture{ca: ca, id: id, verifier: v}, nil
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f, err := makeFixture()
	if err != nil {
		t.Fatalf("making fixture: %v", err)
	}
	return f
}

func (f *fixture) handler(svc service.CheckinAndCommandService, opts ...httpmdm.Option) http.Handler {
	return httpmdm.IdentityMiddleware(httpmdm.CheckinAndCommandHandler(svc, opts...), f.verifier, opts...)
}

func encode(t *testing.T, v any) []byte {
	t.Helper()
	b, err := plist.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func signedRequest(t *testing.T, id *simulator.Identity, body []byte, checkin bool) *http.Request {
	t.Helper()
	req := httptest.NewRequest(http.MethodPut, "/mdm?x=1", bytes.NewReader(body))
	if checkin {
		req.Header.Set("Content-Type", mdm.CheckinContentType)
	}
	if id != nil {
		sig, err := cryptoutil.SignMdmSignature(body, id.Cert, id.Key)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Mdm-Signature", sig)
	}
	return req
}

func TestStatusCodes(t *testing.T) {
	f := newFixture(t)
	authenticate := encode(t, map[string]string{"MessageType": "Authenticate", "UDID": "U1", "Topic": "com.apple.mgmt.x"})
	userAuth := encode(t, map[string]string{"MessageType": "UserAuthenticate", "UDID": "U1", "UserID": "A"})
	dm := encode(t, map[string]string{"MessageType": "DeclarativeManagement", "UDID": "U1", "Endpoint": "tokens"})
	idle := encode(t, map[string]string{"Status": "Idle", "UDID": "U1"})
	cmd, _ := mdm.NewCommand("C1", "ProfileList", nil)

	expired, _ := f.ca.Issue("old", func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour)
	})
	serverOnly, _ := f.ca.Issue("srv", func(c *x509.Certificate) {
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	})
	otherCA, _ := simulator.NewCA("other")
	untrusted, _ := otherCA.Issue("device")

	for _, tc := range []struct {
		name     string
		svc      *stubService
		req      func() *http.Request
		opts     []httpmdm.Option
		want     int
		wantBody string
	}{
		{"success empty", &stubService{}, func() *http.Request { return signedRequest(t, f.id, authenticate, true) }, nil, 200, ""},
		{"success next command", &stubService{next: cmd}, func() *http.Request { return signedRequest(t, f.id, idle, false) }, nil, 200, string(cmd.Raw)},
		{"body over limit", &stubService{}, func() *http.Request { return signedRequest(t, f.id, authenticate, true) }, []httpmdm.Option{httpmdm.WithBodyLimit(int64(len(authenticate) - 1))}, 413, ""},
		{"body read error", &stubService{}, func() *http.Request {
			r := signedRequest(t, f.id, authenticate, true)
			r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(authenticate[:10]), errReader{}))
			return r
		}, nil, 500, ""},
		{"undecodable plist", &stubService{}, func() *http.Request { return signedRequest(t, f.id, []byte("<plist><dict>"), true) }, nil, 400, ""},
		{"unknown message type", &stubService{}, func() *http.Request {
			return signedRequest(t, f.id, encode(t, map[string]string{"MessageType": "Bogus", "UDID": "U1"}), true)
		}, nil, 400, ""},
		{"report without status", &stubService{}, func() *http.Request {
			return signedRequest(t, f.id, encode(t, map[string]string{"UDID": "U1"}), false)
		}, nil, 400, ""},
		{"no enrollment keys", &stubService{}, func() *http.Request {
			return signedRequest(t, f.id, encode(t, map[string]string{"Status": "Idle"}), false)
		}, nil, 500, ""},
		{"unsafe enrollment id", &stubService{}, func() *http.Request {
			return signedRequest(t, f.id, encode(t, map[string]string{"Status": "Idle", "UDID": "../x"}), false)
		}, nil, 400, ""},
		{"no signature", &stubService{}, func() *http.Request { return signedRequest(t, nil, authenticate, true) }, nil, 400, ""},
		{"undecodable signature", &stubService{}, func() *http.Request {
			r := signedRequest(t, nil, authenticate, true)
			r.Header.Set("Mdm-Signature", "!!!not base64")
			return r
		}, nil, 400, ""},
		{"signature over other bytes", &stubService{}, func() *http.Request {
			r := signedRequest(t, f.id, idle, true)
			r.Body = io.NopCloser(bytes.NewReader(authenticate))
			return r
		}, nil, 400, ""},
		{"untrusted CA", &stubService{}, func() *http.Request { return signedRequest(t, untrusted, authenticate, true) }, nil, 400, ""},
		{"expired certificate", &stubService{}, func() *http.Request { return signedRequest(t, expired, authenticate, true) }, nil, 400, ""},
		{"no client-auth usage", &stubService{}, func() *http.Request { return signedRequest(t, serverOnly, authenticate, true) }, nil, 400, ""},
		{"user authenticate declined", &stubService{err: service.ErrDeclined}, func() *http.Request { return signedRequest(t, f.id, userAuth, true) }, nil, 410, ""},
		{"dm non-200 passed through", &stubService{err: &service.StatusError{Status: 404, Body: []byte("dm says no")}}, func() *http.Request { return signedRequest(t, f.id, dm, true) }, nil, 404, "dm says no"},
		{"service error", &stubService{err: errors.New("storage down")}, func() *http.Request { return signedRequest(t, f.id, authenticate, true) }, nil, 500, ""},
		{"service error on report", &stubService{err: errors.New("storage down")}, func() *http.Request { return signedRequest(t, f.id, idle, false) }, nil, 500, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			f.handler(tc.svc, tc.opts...).ServeHTTP(rec, tc.req())
			if rec.Code != tc.want {
				t.Errorf("status: have %d, want %d (body %q)", rec.Code, tc.want, rec.Body.String())
			}
			if tc.want == 200 || tc.wantBody != "" {
				if rec.Body.String() != tc.wantBody {
					t.Errorf("body: have %q, want %q", rec.Body.String(), tc.wantBody)
				}
			}
			if rec.Code == http.StatusUnauthorized {
				t.Error("an MDM endpoint answered 401")
			}
		})
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

func TestRequestCarriesIdentity(t *testing.T) {
	f := newFixture(t)
	svc := &stubService{}
	body := encode(t, map[string]string{"MessageType": "Authenticate", "UDID": "U1", "Topic": "t"})
	rec := httptest.NewRecorder()
	f.handler(svc).ServeHTTP(rec, signedRequest(t, f.id, body, true))
	if rec.Code != 200 {
		t.Fatalf("status %d", rec.Code)
	}
	r := svc.lastReq
	if r == nil || r.EnrollID.ID != "U1" || r.EnrollID.Type != mdm.Device {
		t.Fatalf("enroll id: have %+v", r)
	}
	if r.Certificate == nil || !r.Certificate.Equal(f.id.Cert) {
		t.Error("request does not carry the signer certificate")
	}
	if r.Params["x"] != "1" {
		t.Errorf("params: have %v", r.Params)
	}
}

func TestCertHeader(t *testing.T) {
	f := newFixture(t)
	body := encode(t, map[string]string{"Status": "Idle", "UDID": "U1"})
	for _, tc := range []struct {
		name  string
		value string
		want  int
	}{
		{"rfc 9440", cryptoutil.EncodeCertHeaderRFC9440(f.id.Cert), 200},
		{"escaped pem", cryptoutil.EncodeCertHeaderEscapedPEM(f.id.Cert), 200},
		{"missing", "", 400},
		{"garbage", ":bm90IGEgY2VydA==:", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := &stubService{}
			req := httptest.NewRequest(http.MethodPost, "/mdm", bytes.NewReader(body))
			if tc.value != "" {
				req.Header.Set("X-Client-Cert", tc.value)
			}
			rec := httptest.NewRecorder()
			f.handler(svc, httpmdm.WithCertHeader("X-Client-Cert")).ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Errorf("status: have %d, want %d", rec.Code, tc.want)
			}
			if tc.want == 200 && (svc.lastReq == nil || !svc.lastReq.Certificate.Equal(f.id.Cert)) {
				t.Error("certificate from header not passed on")
			}
		})
	}
}

// TestBodyTimeout sends a device's headers and then stalls in the body:
// the server's read timeout must answer 408.
func TestBodyTimeout(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewUnstartedServer(f.handler(&stubService{}))
	srv.Config.ReadTimeout = 200 * time.Millisecond
	srv.Start()
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := bytes.Repeat([]byte("p"), 100)
	sig, err := cryptoutil.SignMdmSignature(body, f.id.Cert, f.id.Key)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(conn, "PUT /mdm HTTP/1.1\r\nHost: x\r\nContent-Type: "+mdm.CheckinContentType+
		"\r\nMdm-Signature: "+sig+"\r\nContent-Length: 100\r\n\r\n<plist>")
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("status: have %d, want 408", resp.StatusCode)
	}
}
