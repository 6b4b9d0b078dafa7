// Package apnstest runs a fake APNs for tests, in the spirit of
// net/http/httptest: a real HTTP/2 TLS server that demands a client
// certificate, checks that every request is a well-formed MDM push and
// answers the way a test tells it to (success, an APNs error, a GOAWAY,
// a reset stream, a dropped connection, a stall or a slow answer).
package apnstest

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Push is one push request as the fake APNs received it.
type Push struct {
	// Token is the hex device token of the request path.
	Token string
	// PushMagic is the "mdm" value of the JSON body.
	PushMagic string
	// Expiration is the apns-expiration header, "" when absent.
	Expiration string
	// ClientCert is the TLS client certificate of the connection.
	ClientCert *x509.Certificate
}

// Reply tells the fake APNs how to answer one push. The zero Reply is a
// 200 with a fresh apns-id.
type Reply struct {
	// Status is the HTTP status; 0 means 200.
	Status int
	// Reason is the APNs "reason" of the JSON body of a non-200 answer.
	Reason string
	// Delay holds the answer back, as network latency would.
	Delay time.Duration
	// GoAway answers and then sends GOAWAY on the connection, so the
	// client has to open a new one.
	GoAway bool
	// Reset resets the stream instead of answering.
	Reset bool
	// Drop closes every client connection instead of answering.
	Drop bool
	// Stall never answers: the handler waits until the client gives up
	// or the server is closed.
	Stall bool
}

// ReplyFunc chooses the reply to a push. It is called concurrently.
type ReplyFunc func(p *Push) Reply

// Server is a fake APNs. Its URL is the base URL to push to.
type Server struct {
	*httptest.Server

	t      testing.TB
	reply  ReplyFunc
	stop   chan struct{}
	closed sync.Once
	conns  atomic.Int64

	count  atomic.Int64
	record bool

	mu     sync.Mutex
	pushes []Push
}

// Option configures a Server.
type Option func(*Server)

// WithoutRecording keeps only the count of pushes, not the pushes
// themselves (for benchmarks).
func WithoutRecording() Option { return func(s *Server) { s.record = false } }

// NewServer starts a fake APNs that answers with reply (nil: always 200)
// and closes it when the test ends. Requests that are not well-formed MDM
// pushes fail the test and are answered 400 with an APNs reason.
func NewServer(t testing.TB, reply ReplyFunc, opts ...Option) *Server {
	t.Helper()
	if reply == nil {
		reply = func(*Push) Reply { return Reply{} }
	}
	s := &Server{t: t, reply: reply, stop: make(chan struct{}), record: true}
	for _, o := range opts {
		o(s)
	}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.EnableHTTP2 = true
	s.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	s.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

// Close releases stalled and delayed handlers, then shuts the server down.
// It may be called more than once.
func (s *Server) Close() {
	s.closed.Do(func() {
		close(s.stop)
		s.Server.Close()
	})
}

// RootCAs returns a pool that trusts the server's certificate.
func (s *Server) RootCAs() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(s.Certificate())
	return pool
}

// Connections returns the number of connections clients have opened.
func (s *Server) Connections() int { return int(s.conns.Load()) }

// Pushes returns a copy of the well-formed pushes received so far (none
// WithoutRecording).
func (s *Server) Pushes() []Push {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Push(nil), s.pushes...)
}

// Count returns the number of well-formed pushes received so far.
func (s *Server) Count() int { return int(s.count.Load()) }

// reject fails the test and answers like APNs does to a bad request.
func (s *Server) reject(w http.ResponseWriter, status int, reason, format string, args ...any) {
	s.t.Errorf("apnstest: "+format, args...)
	writeReason(w, status, reason)
}

func writeReason(w http.ResponseWriter, status int, reason string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	body := map[string]any{"reason": reason}
	if status == http.StatusGone {
		body["timestamp"] = time.Now().UnixMilli()
	}
	json.NewEncoder(w).Encode(body)
}

func newAPNsID() string {
	var b [16]byte
	rand.Read(b[:])
	h := strings.ToUpper(hex.EncodeToString(b[:]))
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// serve checks one request against what APNs expects of an MDM push,
// records it and answers as the ReplyFunc says.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor != 2 {
		s.reject(w, http.StatusHTTPVersionNotSupported, "BadProtocol", "request over %s, want HTTP/2", r.Proto)
		return
	}
	if r.Method != http.MethodPost {
		s.reject(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "method %s, want POST", r.Method)
		return
	}
	token, ok := strings.CutPrefix(r.URL.Path, "/3/device/")
	if !ok {
		s.reject(w, http.StatusNotFound, "BadPath", "path %q, want /3/device/<token>", r.URL.Path)
		return
	}
	if _, err := hex.DecodeString(token); err != nil || token == "" {
		s.reject(w, http.StatusBadRequest, "BadDeviceToken", "device token %q is not hex", token)
		return
	}
	if have := r.Header.Get("apns-push-type"); have != "mdm" {
		s.reject(w, http.StatusBadRequest, "InvalidPushType", "apns-push-type %q, want mdm", have)
		return
	}
	exp := r.Header.Get("apns-expiration")
	if _, err := strconv.ParseInt(exp, 10, 64); exp != "" && err != nil {
		s.reject(w, http.StatusBadRequest, "BadExpirationDate", "apns-expiration %q is not a UNIX time", exp)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 4097))
	if err != nil {
		return // the client went away
	}
	var payload map[string]any
	if err := json.Unmarshal(body, &payload); err != nil || len(body) > 4096 {
		s.reject(w, http.StatusBadRequest, "BadPayload", "body %q is not a JSON object of at most 4 KiB", body)
		return
	}
	magic, _ := payload["mdm"].(string)
	if magic == "" || len(payload) != 1 {
		s.reject(w, http.StatusBadRequest, "PayloadEmpty", "body %s, want {\"mdm\":\"<PushMagic>\"}", body)
		return
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		s.reject(w, http.StatusForbidden, "MissingProviderToken", "no client certificate")
		return
	}
	p := &Push{Token: token, PushMagic: magic, Expiration: exp, ClientCert: r.TLS.PeerCertificates[0]}
	s.count.Add(1)
	if s.record {
		s.mu.Lock()
		s.pushes = append(s.pushes, *p)
		s.mu.Unlock()
	}

	rep := s.reply(p)
	switch {
	case rep.Reset:
		panic(http.ErrAbortHandler) // the HTTP/2 server resets the stream
	case rep.Drop:
		s.CloseClientConnections()
		s.wait(r, 0)
		return
	case rep.Stall:
		s.wait(r, 0)
		return
	case rep.Delay > 0:
		if !s.wait(r, rep.Delay) {
			return
		}
	}
	if rep.GoAway {
		// The HTTP/2 server turns "Connection: close" into a graceful
		// GOAWAY once this answer is written.
		w.Header().Set("Connection", "close")
	}
	w.Header().Set("apns-id", newAPNsID())
	if rep.Status == 0 || rep.Status == http.StatusOK {
		w.WriteHeader(http.StatusOK)
		return
	}
	writeReason(w, rep.Status, rep.Reason)
}

// wait blocks for d (forever when d is 0) or until the client goes away
// or the server closes. It reports whether d passed.
func (s *Server) wait(r *http.Request, d time.Duration) bool {
	var timeout <-chan time.Time
	if d > 0 {
		tm := time.NewTimer(d)
		defer tm.Stop()
		timeout = tm.C
	}
	select {
	case <-timeout:
		return true
	case <-r.Context().Done():
	case <-s.stop:
	}
	return false
}

// String describes a push for failure messages.
func (p Push) String() string {
	return fmt.Sprintf("push to %s (magic %s)", p.Token, p.PushMagic)
}
