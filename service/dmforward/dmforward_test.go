package dmforward

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/groob/plist"

	"github.com/nanomdm/nanomdm/certverify"
	httpmdm "github.com/nanomdm/nanomdm/http/mdm"
	"github.com/nanomdm/nanomdm/log/logtest"
	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/mdm/simulator"
	"github.com/nanomdm/nanomdm/service"
	"github.com/nanomdm/nanomdm/service/nanomdm"
	"github.com/nanomdm/nanomdm/storage/inmem"
)

func TestURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		base, endpoint, want string // want "" = refused
	}{
		{"https://dm.example.com/api/", "tokens", "https://dm.example.com/api/tokens"},
		{"https://dm.example.com/api/", "declaration-items", "https://dm.example.com/api/declaration-items"},
		{"https://dm.example.com/api/", "declaration/activation/com.example.act", "https://dm.example.com/api/declaration/activation/com.example.act"},
		{"https://dm.example.com/api/", "status", "https://dm.example.com/api/status"},
		{"https://dm.example.com/api/", "a/../b", "https://dm.example.com/api/b"},
		{"https://dm.example.com/api/", "asset/x%20y", "https://dm.example.com/api/asset/x%20y"},
		{"https://dm.example.com/", "tokens", "https://dm.example.com/tokens"},
		{"https://dm.example.com", "tokens", "https://dm.example.com/tokens"},
		// Without a trailing slash the last segment is replaced.
		{"https://dm.example.com/api", "tokens", "https://dm.example.com/tokens"},
		{"https://dm.example.com/a/api", "tokens", "https://dm.example.com/a/tokens"},
		// Endpoints that would leave the base.
		{"https://dm.example.com/api/", "https://evil.example.com/x", ""},
		{"https://dm.example.com/api/", "//evil.example.com/x", ""},
		{"https://dm.example.com/api/", "/tokens", ""},
		{"https://dm.example.com/api/", "../tokens", ""},
		{"https://dm.example.com/api/", "a/../../tokens", ""},
		{"https://dm.example.com/api/", "javascript:alert(1)", ""},
		{"https://dm.example.com/api/", "%zz", ""},
	} {
		t.Run(tc.base+" "+tc.endpoint, func(t *testing.T) {
			f, err := New(tc.base)
			if err != nil {
				t.Fatal(err)
			}
			u, err := f.URL(tc.endpoint)
			switch {
			case tc.want == "" && err == nil:
				t.Errorf("URL(%q) = %s, want refused", tc.endpoint, u)
			case tc.want == "" && !errors.Is(err, ErrBadEndpoint):
				t.Errorf("URL(%q) err = %v, want ErrBadEndpoint", tc.endpoint, err)
			case tc.want != "" && err != nil:
				t.Errorf("URL(%q) err = %v, want %s", tc.endpoint, err, tc.want)
			case tc.want != "" && u.String() != tc.want:
				t.Errorf("URL(%q) = %s, want %s", tc.endpoint, u, tc.want)
			}
		})
	}
}

func TestNewWarnsWithoutTrailingSlash(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		base string
		warn bool
	}{
		{"https://dm.example.com/api/", false},
		{"https://dm.example.com/", false},
		{"https://dm.example.com/api", true},
		{"https://dm.example.com", true},
	} {
		logger := &logtest.Recorder{}
		if _, err := New(tc.base, WithLogger(logger)); err != nil {
			t.Fatal(err)
		}
		warned := false
		for _, l := range logger.Text() {
			warned = warned || strings.Contains(l, "no trailing slash")
		}
		if warned != tc.warn {
			t.Errorf("New(%q): warned = %v, want %v (logs %v)", tc.base, warned, tc.warn, logger.Text())
		}
	}
	for _, bad := range []string{"dm.example.com/api/", "ftp://dm.example.com/", "/api/", "http://%zz/"} {
		if _, err := New(bad); err == nil {
			t.Errorf("New(%q): no error, want a refusal", bad)
		}
	}
}

// dmServer is a fake DM server that records requests and answers with
// the configured status, body and signature.
type dmServer struct {
	*httptest.Server
	mu       sync.Mutex
	requests []seenRequest
	status   int
	body     []byte
	sigKey   []byte // sign answers with this key
	badSig   bool   // send a wrong signature
}

type seenRequest struct {
	method, path, contentType, enrollmentID, signature string
	body                                               []byte
	header                                             http.Header
}

func newDMServer(t *testing.T) *dmServer {
	t.Helper()
	s := &dmServer{status: http.StatusOK, body: []byte(`{"ok":true}`)}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.requests = append(s.requests, seenRequest{
			method: r.Method, path: r.URL.Path, contentType: r.Header.Get("Content-Type"),
			enrollmentID: r.Header.Get(EnrollmentIDHeader), signature: r.Header.Get(SignatureHeader), body: b,
			header: r.Header.Clone(),
		})
		status, body, key, bad := s.status, s.body, s.sigKey, s.badSig
		s.mu.Unlock()
		if key != nil {
			sig := Sign(key, body)
			if bad {
				sig = Sign(key, append(body, 'x'))
			}
			w.Header().Set(SignatureHeader, sig)
		}
		w.WriteHeader(status)
		w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

// set changes the answer under the lock the handler reads it with.
func (s *dmServer) set(status int, body []byte, badSig bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status, s.body, s.badSig = status, body, badSig
}

func (s *dmServer) last(t *testing.T) seenRequest {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.requests) == 0 {
		t.Fatal("dm server saw no request")
	}
	return s.requests[len(s.requests)-1]
}

func dmMessage(endpoint string, data []byte) *mdm.DeclarativeManagement {
	return &mdm.DeclarativeManagement{
		Enrollment:  mdm.Enrollment{UDID: "UDID-1", UserID: "USER-1"},
		MessageType: mdm.MessageType{MessageType: mdm.MessageDeclarativeManagement},
		Endpoint:    endpoint,
		Data:        data,
	}
}

func dmRequest() *mdm.Request {
	return &mdm.Request{Context: context.Background(), EnrollID: &mdm.EnrollID{ID: "UDID-1:USER-1", ParentID: "UDID-1", Type: mdm.User}}
}

func TestForward(t *testing.T) {
	t.Parallel()
	sendKey, recvKey := []byte("send key"), []byte("recv key")
	for _, tc := range []struct {
		name       string
		endpoint   string
		data       []byte
		sendKey    bool
		recvKey    bool // forwarder verifies answers
		serverSigs bool // server signs answers
		badSig     bool
		status     int
		body       string
		wantMethod string
		wantStatus int // 0 = success; else the StatusError status; -1 = plain error
		wantErr    error
	}{
		{name: "GET without data", endpoint: "declaration-items", wantMethod: http.MethodGet, body: `{"Declarations":{}}`},
		{name: "PUT with data", endpoint: "status", data: []byte(`{"StatusItems":{}}`), wantMethod: http.MethodPut, body: ""},
		{name: "signed request", endpoint: "tokens", sendKey: true, wantMethod: http.MethodGet, body: `{"SyncTokens":{}}`},
		{name: "signed PUT", endpoint: "status", data: []byte(`{"a":1}`), sendKey: true, wantMethod: http.MethodPut, body: `{}`},
		{name: "verified answer", endpoint: "tokens", recvKey: true, serverSigs: true, wantMethod: http.MethodGet, body: `{"SyncTokens":{}}`},
		{name: "unsigned answer refused", endpoint: "tokens", recvKey: true, wantMethod: http.MethodGet, body: `{}`, wantStatus: -1, wantErr: ErrBadSignature},
		{name: "bad signature refused", endpoint: "tokens", recvKey: true, serverSigs: true, badSig: true, wantMethod: http.MethodGet, body: `{}`, wantStatus: -1, wantErr: ErrBadSignature},
		{name: "bad signature on error answer refused", endpoint: "tokens", recvKey: true, serverSigs: true, badSig: true, status: 404, wantMethod: http.MethodGet, body: `nope`, wantStatus: -1, wantErr: ErrBadSignature},
		{name: "non-200 passed through", endpoint: "declaration/configuration/x", status: 404, wantMethod: http.MethodGet, body: "no such declaration", wantStatus: 404},
		{name: "signed non-200 passed through", endpoint: "tokens", recvKey: true, serverSigs: true, status: 503, wantMethod: http.MethodGet, body: "later", wantStatus: 503},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newDMServer(t)
			srv.body, srv.badSig = []byte(tc.body), tc.badSig
			if tc.status != 0 {
				srv.status = tc.status
			}
			if tc.serverSigs {
				srv.sigKey = recvKey
			}
			var opts []Option
			if tc.sendKey {
				opts = append(opts, WithSendHMACKey(sendKey))
			}
			if tc.recvKey {
				opts = append(opts, WithRecvHMACKey(recvKey))
			}
			f, err := New(srv.URL+"/dm/", opts...)
			if err != nil {
				t.Fatal(err)
			}
			got, err := f.DeclarativeManagement(dmRequest(), dmMessage(tc.endpoint, tc.data))
			seen := srv.last(t)
			if seen.method != tc.wantMethod || seen.path != "/dm/"+tc.endpoint {
				t.Errorf("dm server saw %s %s, want %s /dm/%s", seen.method, seen.path, tc.wantMethod, tc.endpoint)
			}
			if seen.enrollmentID != "UDID-1:USER-1" {
				t.Errorf("%s = %q, want UDID-1:USER-1", EnrollmentIDHeader, seen.enrollmentID)
			}
			if !bytes.Equal(seen.body, tc.data) {
				t.Errorf("dm server body = %q, want %q", seen.body, tc.data)
			}
			wantCT := ""
			if len(tc.data) > 0 {
				wantCT = "application/json"
			}
			if seen.contentType != wantCT {
				t.Errorf("Content-Type = %q, want %q", seen.contentType, wantCT)
			}
			switch {
			case tc.sendKey && !Verify(sendKey, seen.body, seen.signature):
				t.Errorf("request signature %q does not verify", seen.signature)
			case !tc.sendKey && seen.signature != "":
				t.Errorf("request signed (%q) without a send key", seen.signature)
			}
			var se *service.StatusError
			switch {
			case tc.wantStatus == 0:
				if err != nil || string(got) != tc.body {
					t.Errorf("answer = %q, %v; want %q", got, err, tc.body)
				}
			case tc.wantStatus == -1:
				if !errors.Is(err, tc.wantErr) || errors.As(err, &se) {
					t.Errorf("err = %v, want a plain error wrapping %v", err, tc.wantErr)
				}
			default:
				if !errors.As(err, &se) || se.Status != tc.wantStatus || string(se.Body) != tc.body {
					t.Errorf("err = %#v, want StatusError %d with body %q", err, tc.wantStatus, tc.body)
				}
			}
		})
	}
}

// TestEnrollmentHeaders checks the headers that tell the DM server which
// channel asks: the ID and type always, the parent only for user channels.
func TestEnrollmentHeaders(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		id         *mdm.EnrollID
		wantType   string
		wantParent []string // nil: header absent
	}{
		{"device", &mdm.EnrollID{ID: "UDID-1", Type: mdm.Device}, "Device", nil},
		{"user", &mdm.EnrollID{ID: "UDID-1:USER-1", ParentID: "UDID-1", Type: mdm.User}, "User", []string{"UDID-1"}},
		{"user enrollment device", &mdm.EnrollID{ID: "EID-1", Type: mdm.UserEnrollmentDevice}, "User Enrollment (Device)", nil},
		{"user enrollment", &mdm.EnrollID{ID: "EID-1:USER-1", ParentID: "EID-1", Type: mdm.UserEnrollment}, "User Enrollment", []string{"EID-1"}},
		{"shared ipad", &mdm.EnrollID{ID: "UDID-1:short", ParentID: "UDID-1", Type: mdm.SharediPad}, "Shared iPad", []string{"UDID-1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newDMServer(t)
			f, err := New(srv.URL + "/dm/")
			if err != nil {
				t.Fatal(err)
			}
			r := &mdm.Request{Context: context.Background(), EnrollID: tc.id}
			if _, err := f.DeclarativeManagement(r, dmMessage("tokens", nil)); err != nil {
				t.Fatal(err)
			}
			h := srv.last(t).header
			if have := h.Values(EnrollmentIDHeader); len(have) != 1 || have[0] != tc.id.ID {
				t.Errorf("%s: have %q, want %q", EnrollmentIDHeader, have, tc.id.ID)
			}
			if have := h.Values(EnrollmentTypeHeader); len(have) != 1 || have[0] != tc.wantType {
				t.Errorf("%s: have %q, want %q", EnrollmentTypeHeader, have, tc.wantType)
			}
			if have := h.Values(EnrollmentParentIDHeader); !slices.Equal(have, tc.wantParent) {
				t.Errorf("%s: have %q, want %q", EnrollmentParentIDHeader, have, tc.wantParent)
			}
		})
	}
}

func TestAnswerTooLarge(t *testing.T) {
	t.Parallel()
	srv := newDMServer(t)
	srv.body = bytes.Repeat([]byte("x"), 101)
	f, err := New(srv.URL+"/", WithBodyLimit(100))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.DeclarativeManagement(dmRequest(), dmMessage("tokens", nil)); !errors.Is(err, ErrAnswerTooLarge) {
		t.Errorf("err = %v, want ErrAnswerTooLarge", err)
	}
}

func TestBadEndpointIsBadRequest(t *testing.T) {
	t.Parallel()
	srv := newDMServer(t)
	f, _ := New(srv.URL + "/dm/")
	_, err := f.DeclarativeManagement(dmRequest(), dmMessage("../admin", nil))
	var se *service.StatusError
	if !errors.As(err, &se) || se.Status != http.StatusBadRequest || !errors.Is(err, ErrBadEndpoint) {
		t.Errorf("err = %v, want StatusError 400 wrapping ErrBadEndpoint", err)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if len(srv.requests) != 0 {
		t.Errorf("dm server saw %d requests, want none", len(srv.requests))
	}
}

// TestThroughHandlers runs a simulated device's DeclarativeManagement
// check-ins through the real MDM handler and core service: the device
// gets the DM server's answer, its non-200 status and body as they are,
// and 500 when the answer's signature does not verify (logged).
func TestThroughHandlers(t *testing.T) {
	t.Parallel()
	recvKey := []byte("recv key")
	srv := newDMServer(t)
	srv.sigKey = recvKey
	logs := &logtest.Recorder{}
	fwd, err := New(srv.URL+"/dm/", WithRecvHMACKey(recvKey))
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := simulator.NewCA("dm test CA")
	verifier, _ := certverify.NewPoolVerifier(ca.CertPEM(), nil)
	core := nanomdm.New(inmem.New(), nanomdm.WithDeclarativeManagement(fwd))
	mdmSrv := httptest.NewServer(httpmdm.IdentityMiddleware(httpmdm.CheckinHandler(core, httpmdm.WithLogger(logs)), verifier))
	defer mdmSrv.Close()
	id, _ := ca.Issue("device")
	dev := simulator.NewDevice(&simulator.Transport{URL: mdmSrv.URL}, id)

	send := func(endpoint string, data []byte) ([]byte, error) {
		m := map[string]any{"MessageType": "DeclarativeManagement", "UDID": dev.UDID(), "Endpoint": endpoint}
		if data != nil {
			m["Data"] = data
		}
		b, _ := plist.Marshal(m)
		return dev.Transport.Send(context.Background(), dev.Identity, b, true)
	}

	answer := []byte(`{"SyncTokens":{"DeclarationsToken":"t1"}}`)
	srv.set(http.StatusOK, answer, false)
	got, err := send("tokens", nil)
	if err != nil || string(got) != string(answer) {
		t.Errorf("tokens: answer = %q, %v; want %q", got, err, answer)
	}
	if seen := srv.last(t); seen.enrollmentID != dev.UDID() || seen.method != http.MethodGet {
		t.Errorf("dm server saw %s with enrollment %q, want GET with %q", seen.method, seen.enrollmentID, dev.UDID())
	}

	srv.set(http.StatusNotFound, []byte("unknown declaration"), false)
	_, err = send("declaration/configuration/missing", nil)
	var es *simulator.ErrStatus
	if !errors.As(err, &es) || es.Status != http.StatusNotFound || string(es.Body) != "unknown declaration" {
		t.Errorf("404 pass-through: err = %v, want 404 with the DM server's body only", err)
	}

	srv.set(http.StatusOK, []byte(`{}`), true)
	_, err = send("status", []byte(`{"StatusItems":{}}`))
	if !errors.As(err, &es) || es.Status != http.StatusInternalServerError {
		t.Errorf("bad signature: err = %v, want 500", err)
	}
	logged := false
	for _, l := range logs.Text() {
		logged = logged || (strings.Contains(l, "mdm request failed") && strings.Contains(l, ErrBadSignature.Error()))
	}
	if !logged {
		t.Errorf("bad signature not logged; logs: %v", logs.Text())
	}
}
