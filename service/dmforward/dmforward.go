// Package dmforward answers DeclarativeManagement check-ins by forwarding
// them to a declarative-management (DM) server over HTTP. It implements
// the core service's DeclarativeManagement option.
//
// The request URL is the configured base URL resolved against the
// message's Endpoint (so "https://dm.example.com/api/" and endpoint
// "tokens" give ".../api/tokens"). A message without Data is sent as GET,
// one with Data as PUT of the data (application/json). The enrollment ID
// travels in X-Enrollment-ID, the channel type's name (mdm.EnrollType) in
// X-Enrollment-Type, and a user channel's device ID in
// X-Enrollment-ParentID, as current NanoMDM releases send them. A 200 answer's body is the device's answer;
// any other status reaches the device as it is, with the DM server's body
// only. Optionally requests are signed and answers verified with
// X-Hmac-Signature: base64(HMAC-SHA256(body)).
package dmforward

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/nanomdm/nanomdm/log"
	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/service"
)

// Defaults of the options.
const (
	DefaultTimeout   = 30 * time.Second
	DefaultBodyLimit = 10 << 20
)

// Header names.
const (
	EnrollmentIDHeader       = "X-Enrollment-ID"
	EnrollmentTypeHeader     = "X-Enrollment-Type"
	EnrollmentParentIDHeader = "X-Enrollment-ParentID"
	SignatureHeader          = "X-Hmac-Signature"
)

var (
	// ErrBadSignature means the DM server's answer did not carry a valid
	// X-Hmac-Signature for the receive key. The device is answered 500.
	ErrBadSignature = errors.New("dm server answer signature does not verify")

	// ErrBadEndpoint means the message's Endpoint does not resolve to a
	// URL below the base URL (an absolute URL, "..", and so on). The
	// device is answered 400.
	ErrBadEndpoint = errors.New("declarative management endpoint outside the base URL")

	// ErrAnswerTooLarge means the DM server's answer exceeded the limit.
	ErrAnswerTooLarge = errors.New("dm server answer too large")
)

// Forwarder sends DeclarativeManagement messages to a DM server.
type Forwarder struct {
	base      *url.URL
	prefix    string // path every resolved URL must start with
	client    *http.Client
	logger    log.Logger
	sendKey   []byte
	recvKey   []byte
	bodyLimit int64
}

// Option configures a Forwarder.
type Option func(*Forwarder)

// WithLogger sets the logger.
func WithLogger(l log.Logger) Option { return func(f *Forwarder) { f.logger = l } }

// WithClient sets the HTTP client (the default has a 30 s timeout).
func WithClient(c *http.Client) Option { return func(f *Forwarder) { f.client = c } }

// WithSendHMACKey signs every request body with key.
func WithSendHMACKey(key []byte) Option { return func(f *Forwarder) { f.sendKey = key } }

// WithRecvHMACKey requires every answer to be signed with key; answers
// that are not are refused (the device is answered 500).
func WithRecvHMACKey(key []byte) Option { return func(f *Forwarder) { f.recvKey = key } }

// WithBodyLimit bounds the DM server's answer.
func WithBodyLimit(n int64) Option { return func(f *Forwarder) { f.bodyLimit = n } }

// New returns a Forwarder to the DM server at base, an absolute http or
// https URL. A base without a trailing slash is allowed (its last path
// segment is then replaced by the endpoint, as in RFC 3986 resolution)
// but logged as a warning, because it is usually a mistake.
func New(base string, opts ...Option) (*Forwarder, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("parsing dm base URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("dm base URL %q: want an absolute http or https URL", base)
	}
	f := &Forwarder{
		base:      u,
		logger:    log.Nop,
		client:    &http.Client{Timeout: DefaultTimeout},
		bodyLimit: DefaultBodyLimit,
	}
	for _, o := range opts {
		o(f)
	}
	f.prefix = u.EscapedPath()
	if i := strings.LastIndex(f.prefix, "/"); i >= 0 {
		f.prefix = f.prefix[:i+1]
	} else {
		f.prefix = "/"
	}
	if !strings.HasSuffix(u.Path, "/") {
		f.logger.Info("msg", "dm base URL has no trailing slash: its last path segment is replaced by each endpoint",
			"url", base, "requests_go_below", u.Scheme+"://"+u.Host+f.prefix)
	}
	return f, nil
}

// URL resolves a DeclarativeManagement Endpoint against the base URL. It
// refuses endpoints that are absolute URLs or climb out of the base path.
func (f *Forwarder) URL(endpoint string) (*url.URL, error) {
	ref, err := url.Parse(endpoint)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %w", ErrBadEndpoint, endpoint, err)
	}
	if ref.Scheme != "" || ref.Host != "" || ref.User != nil || ref.Opaque != "" || strings.HasPrefix(endpoint, "/") {
		return nil, fmt.Errorf("%w: %q", ErrBadEndpoint, endpoint)
	}
	u := f.base.ResolveReference(ref)
	if u.Scheme != f.base.Scheme || u.Host != f.base.Host || !strings.HasPrefix(u.EscapedPath(), f.prefix) {
		return nil, fmt.Errorf("%w: %q", ErrBadEndpoint, endpoint)
	}
	return u, nil
}

// DeclarativeManagement implements the core service's
// DeclarativeManagement option.
func (f *Forwarder) DeclarativeManagement(r *mdm.Request, msg *mdm.DeclarativeManagement) ([]byte, error) {
	u, err := f.URL(msg.Endpoint)
	if err != nil {
		return nil, &service.StatusError{Status: http.StatusBadRequest, Err: err}
	}
	method, body := http.MethodGet, []byte(nil)
	if len(msg.Data) > 0 {
		method, body = http.MethodPut, msg.Data
	}
	req, err := http.NewRequestWithContext(r.Context, method, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("building dm request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if r.EnrollID != nil {
		req.Header.Set(EnrollmentIDHeader, r.EnrollID.ID)
		req.Header.Set(EnrollmentTypeHeader, r.EnrollID.Type.String())
		if r.EnrollID.Type.IsUserChannel() && r.EnrollID.ParentID != "" {
			req.Header.Set(EnrollmentParentIDHeader, r.EnrollID.ParentID)
		}
	}
	if len(f.sendKey) > 0 {
		req.Header.Set(SignatureHeader, Sign(f.sendKey, body))
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("dm request: %w", err)
	}
	defer resp.Body.Close()
	return f.answer(resp.StatusCode, resp.Header.Get(SignatureHeader), io.LimitReader(resp.Body, f.bodyLimit+1))
}

// answer reads and checks the DM server's answer: the signature (when a
// receive key is set) over every answer, then the status.
func (f *Forwarder) answer(status int, signature string, body io.Reader) ([]byte, error) {
	b, err := io.ReadAll(body)
	if err != nil {
		return nil, fmt.Errorf("reading dm answer: %w", err)
	}
	if int64(len(b)) > f.bodyLimit {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrAnswerTooLarge, f.bodyLimit)
	}
	if len(f.recvKey) > 0 && !Verify(f.recvKey, b, signature) {
		return nil, fmt.Errorf("%w (status %d)", ErrBadSignature, status)
	}
	if status < 200 || status > 599 {
		return nil, fmt.Errorf("dm server answered unusable status %d", status)
	}
	if status != http.StatusOK {
		return nil, &service.StatusError{Status: status, Body: b, Err: fmt.Errorf("dm server answered %d", status)}
	}
	return b, nil
}

// Sign returns base64(HMAC-SHA256(key, body)), the X-Hmac-Signature value.
func Sign(key, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write(body)
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// Verify reports whether signature (an X-Hmac-Signature value) is the
// HMAC-SHA256 of body under key, comparing in constant time.
func Verify(key, body []byte, signature string) bool {
	got, err := base64.StdEncoding.DecodeString(strings.TrimSpace(signature))
	if err != nil || len(got) != sha256.Size {
		return false
	}
	m := hmac.New(sha256.New, key)
	m.Write(body)
	return hmac.Equal(got, m.Sum(nil))
}
