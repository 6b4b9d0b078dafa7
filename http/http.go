// Package http holds the HTTP pieces shared by the MDM and API handlers:
// request tracing and logging, Basic authentication, bounded body reading
// and the version endpoint.
package http

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	nethttp "net/http"
	"os"
	"time"

	"github.com/nanomdm/nanomdm/log"
)

// TraceID returns the trace ID of the request context, or "". The ID
// lives in package log so that services can read it without HTTP.
func TraceID(ctx context.Context) string { return log.TraceID(ctx) }

// WithTraceID returns ctx carrying trace ID id.
func WithTraceID(ctx context.Context, id string) context.Context {
	return log.WithTraceID(ctx, id)
}

func newTraceID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// StatusRecorder is a ResponseWriter that remembers the status code the
// handler answered with, for middleware that logs or counts it.
type StatusRecorder struct {
	nethttp.ResponseWriter
	status int
}

// NewStatusRecorder wraps w.
func NewStatusRecorder(w nethttp.ResponseWriter) *StatusRecorder {
	return &StatusRecorder{ResponseWriter: w}
}

// Status returns the status answered so far: 200 when the handler wrote
// nothing, as net/http then answers 200.
func (s *StatusRecorder) Status() int {
	if s.status == 0 {
		return nethttp.StatusOK
	}
	return s.status
}

func (s *StatusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *StatusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = nethttp.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the real writer (to flush a
// proxied stream, for example).
func (s *StatusRecorder) Unwrap() nethttp.ResponseWriter { return s.ResponseWriter }

// TraceLoggingMiddleware gives every request a 16-hex-character trace ID
// (in the context and in the log fields of the context) and logs one line
// per request with its address, method, path, agent, forwarded-for,
// status and duration.
func TraceLoggingMiddleware(next nethttp.Handler, logger log.Logger) nethttp.Handler {
	return nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		start := time.Now()
		id := newTraceID()
		ctx := WithTraceID(r.Context(), id)
		ctx = log.WithFields(ctx, "trace_id", id)
		rec := NewStatusRecorder(w)
		next.ServeHTTP(rec, r.WithContext(ctx))
		kv := []any{"addr", r.RemoteAddr, "method", r.Method, "path", r.URL.Path, "agent", r.UserAgent()}
		if fwd := r.Header.Get("X-Forwarded-For"); fwd != "" {
			kv = append(kv, "x_forwarded_for", fwd)
		}
		kv = append(kv, "status", rec.Status(), "duration", time.Since(start).String())
		log.From(ctx, logger).Info(kv...)
	})
}

// APIUsername is the Basic-auth user name of the API.
const APIUsername = "nanomdm"

// AuthOption configures BasicAuthMiddleware.
type AuthOption func(*authOptions)

type authOptions struct {
	limiter *AuthFailureLimiter
	logger  log.Logger
}

// WithAuthFailureLimiter makes the middleware count failed attempts in l
// and answer 429 to clients l has locked out. Share one limiter between
// every route guarded by the same credentials. A nil l is ignored.
func WithAuthFailureLimiter(l *AuthFailureLimiter) AuthOption {
	return func(o *authOptions) { o.limiter = l }
}

// WithAuthLogger sets the logger of the line written when a client is
// locked out.
func WithAuthLogger(l log.Logger) AuthOption {
	return func(o *authOptions) { o.logger = l }
}

var errTooManyFailures = errors.New("too many failed authentication attempts; retry later")

// BasicAuthMiddleware admits requests whose Basic credentials are user
// and password (compared in constant time) and answers 401 otherwise.
// With WithAuthFailureLimiter, a client locked out after repeated
// failures is answered 429 without its credentials being checked.
// Only API routes use it: MDM endpoints never answer 401.
func BasicAuthMiddleware(next nethttp.Handler, user, password, realm string, opts ...AuthOption) nethttp.Handler {
	o := authOptions{logger: log.Nop}
	for _, f := range opts {
		f(&o)
	}
	return nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		var key string
		if o.limiter != nil {
			key = clientKey(r)
			if left := o.limiter.lockedFor(key); left > 0 {
				writeLocked(w, left)
				return
			}
		}
		u, p, ok := r.BasicAuth()
		if !ok || !CredentialsMatch(u, p, user, password) {
			if o.limiter != nil && o.limiter.fail(key) {
				log.From(r.Context(), o.logger).Info("msg", "client locked out after failed API authentications",
					"addr", key, "failures", o.limiter.limit, "for", o.limiter.window.String())
			}
			w.Header().Set("WWW-Authenticate", `Basic realm="`+realm+`"`)
			WriteJSONError(w, nethttp.StatusUnauthorized, errors.New("unauthorized"))
			return
		}
		if o.limiter != nil {
			o.limiter.succeed(key)
		}
		next.ServeHTTP(w, r)
	})
}

// NotFoundJSONMiddleware answers requests that mux has no route for with
// a JSON 404, like every other API error, instead of mux's plain text.
func NotFoundJSONMiddleware(mux *nethttp.ServeMux) nethttp.Handler {
	return nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		if _, pattern := mux.Handler(r); pattern == "" {
			WriteJSONError(w, nethttp.StatusNotFound, errors.New("no such endpoint: "+r.URL.Path))
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// CredentialsMatch reports whether user and password are wantUser and
// wantPassword, in time that tells a guesser nothing: digests are
// compared, not the texts, as ConstantTimeCompare returns at once on a
// length mismatch.
func CredentialsMatch(user, password, wantUser, wantPassword string) bool {
	hu, hp := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(password))
	wu, wp := sha256.Sum256([]byte(wantUser)), sha256.Sum256([]byte(wantPassword))
	return subtle.ConstantTimeCompare(hu[:], wu[:])&subtle.ConstantTimeCompare(hp[:], wp[:]) == 1
}

// MethodsMiddleware answers 405 for methods not in allowed.
func MethodsMiddleware(next nethttp.Handler, allowed ...string) nethttp.Handler {
	return nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		for _, m := range allowed {
			if r.Method == m {
				next.ServeHTTP(w, r)
				return
			}
		}
		for _, m := range allowed {
			w.Header().Add("Allow", m)
		}
		WriteJSONError(w, nethttp.StatusMethodNotAllowed, errors.New("method not allowed"))
	})
}

// ErrBodyTimeout means reading the request body hit a deadline.
var ErrBodyTimeout = errors.New("request body read timed out")

// ReadBody reads the whole request body, at most limit bytes (limit <= 0
// means no limit). Exceeding the limit returns an *http.MaxBytesError; a
// read deadline returns an error wrapping ErrBodyTimeout.
//
// A body of known length is read into one buffer of that size. A body
// that HoldBody put back is returned as it is, without a copy, so a
// middleware that needed the body (to verify a signature) and the handler
// after it read it once between them.
func ReadBody(w nethttp.ResponseWriter, r *nethttp.Request, limit int64) ([]byte, error) {
	if h, ok := r.Body.(*heldBody); ok {
		if limit > 0 && int64(len(h.b)) > limit {
			return nil, &nethttp.MaxBytesError{Limit: limit}
		}
		return h.b, nil
	}
	if limit > 0 && r.ContentLength > limit {
		return nil, &nethttp.MaxBytesError{Limit: limit}
	}
	body := r.Body
	if limit > 0 {
		body = nethttp.MaxBytesReader(w, r.Body, limit)
	}
	var b []byte
	var err error
	if r.ContentLength >= 0 {
		b, err = readExactly(body, r.ContentLength)
	} else {
		b, err = io.ReadAll(body)
	}
	if err != nil {
		var ne net.Error
		if errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
			return nil, errors.Join(ErrBodyTimeout, err)
		}
		return nil, err
	}
	return b, nil
}

// readExactly reads a body of declared length n into a buffer of that
// size. net/http ends such a body after n bytes, reporting a shorter one
// as io.ErrUnexpectedEOF.
func readExactly(body io.Reader, n int64) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(body, b); err != nil {
		return nil, err
	}
	return b, nil
}

// HoldBody makes b the body of r again after a middleware read it with
// ReadBody: handlers after it read the same bytes, and ReadBody returns
// b itself.
func HoldBody(r *nethttp.Request, b []byte) {
	r.Body = &heldBody{Reader: bytes.NewReader(b), b: b}
	r.ContentLength = int64(len(b))
}

// heldBody is a body already read into memory.
type heldBody struct {
	*bytes.Reader
	b []byte
}

func (*heldBody) Close() error { return nil }

// BodyStatus returns the status for an error from ReadBody: 413 above the
// limit, 408 on a timeout, 500 otherwise.
func BodyStatus(err error) int {
	var mbe *nethttp.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return nethttp.StatusRequestEntityTooLarge
	case errors.Is(err, ErrBodyTimeout):
		return nethttp.StatusRequestTimeout
	}
	return nethttp.StatusInternalServerError
}

// WriteJSON writes v as a JSON answer with the given status.
func WriteJSON(w nethttp.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// WriteJSONError writes {"error": "..."} with the given status.
func WriteJSONError(w nethttp.ResponseWriter, status int, err error) {
	WriteJSON(w, status, struct {
		Error string `json:"error"`
	}{Error: err.Error()})
}

// VersionHandler answers {"version": version}.
func VersionHandler(version string) nethttp.Handler {
	return nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		WriteJSON(w, nethttp.StatusOK, struct {
			Version string `json:"version"`
		}{version})
	})
}
