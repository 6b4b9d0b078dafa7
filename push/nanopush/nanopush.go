// Package nanopush sends MDM push notifications to Apple Push Notification
// service (APNs) over HTTP/2, authenticating with the topic's push
// certificate as TLS client certificate.
//
// A Provider serves one push certificate. It keeps its HTTP/2 connections
// open between calls, bounds the requests in flight with a worker pool,
// gives every request a timeout and turns every failure (an APNs error, a
// GOAWAY, a reset stream, a dropped connection) into the result of the
// affected device token only. A broken connection is replaced on the next
// request.
package nanopush

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpproxy"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/push"
)

// APNs base URLs.
const (
	// Production is the APNs server for MDM push certificates issued by
	// Apple's Push Certificates Portal.
	Production = "https://api.push.apple.com"
	// Sandbox is the APNs development server.
	Sandbox = "https://api.development.push.apple.com"
)

// Defaults of the options.
const (
	DefaultWorkers = 5
	DefaultTimeout = 10 * time.Second
)

// Sentinel errors an *Error unwraps to, for the APNs reasons that tell an
// operator something about the enrollment rather than the server.
var (
	// ErrBadDeviceToken means APNs refused the device token (reason
	// BadDeviceToken), e.g. a production token sent to the sandbox.
	ErrBadDeviceToken = errors.New("bad device token")
	// ErrUnregistered means the token is no longer valid for the topic
	// (status 410, reason Unregistered): the device left MDM.
	ErrUnregistered = errors.New("device token unregistered")
)

// Error is an APNs answer other than 200 to one push.
type Error struct {
	// StatusCode is the HTTP status APNs answered with.
	StatusCode int
	// Reason is the "reason" of APNs' JSON body, such as BadDeviceToken.
	Reason string
	// Timestamp, for status 410, is when APNs last knew the token valid.
	Timestamp time.Time
	// APNsID is the apns-id header of the answer.
	APNsID string
}

func (e *Error) Error() string {
	reason := e.Reason
	if reason == "" {
		reason = http.StatusText(e.StatusCode)
	}
	return fmt.Sprintf("apns: %s (status %d)", reason, e.StatusCode)
}

// Unwrap returns ErrUnregistered or ErrBadDeviceToken when the answer
// means that, else nil.
func (e *Error) Unwrap() error {
	switch {
	case e.StatusCode == http.StatusGone || e.Reason == "Unregistered":
		return ErrUnregistered
	case e.Reason == "BadDeviceToken":
		return ErrBadDeviceToken
	}
	return nil
}

// config is the options of a Factory.
type config struct {
	baseURL    string
	workers    int
	timeout    time.Duration
	expiration time.Duration
	proxy      func(*url.URL) (*url.URL, error)
	rootCAs    *x509.CertPool
}

// Option configures a Provider.
type Option func(*config)

// WithBaseURL sends pushes to baseURL (scheme and host, such as Sandbox
// or a test server) instead of Production.
func WithBaseURL(baseURL string) Option { return func(c *config) { c.baseURL = baseURL } }

// WithWorkers bounds the pushes in flight at once to n (default
// DefaultWorkers), across all calls of the Provider.
func WithWorkers(n int) Option { return func(c *config) { c.workers = n } }

// WithTimeout bounds each push request, from sending to the answer, and
// each connection set-up (default DefaultTimeout).
func WithTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// WithExpiration asks APNs to keep an undeliverable push for d (the
// apns-expiration header). Zero, the default, sends no header and lets
// APNs choose.
func WithExpiration(d time.Duration) Option { return func(c *config) { c.expiration = d } }

// WithProxy sets the function that picks the HTTP(S) proxy for the APNs
// URL, returning nil for a direct connection (as
// httpproxy.Config.ProxyFunc). By default the HTTPS_PROXY and NO_PROXY
// environment variables are read when the Factory is made.
func WithProxy(f func(*url.URL) (*url.URL, error)) Option {
	return func(c *config) { c.proxy = f }
}

// WithRootCAs trusts pool instead of the system roots for the APNs server
// certificate (for tests).
func WithRootCAs(pool *x509.CertPool) Option { return func(c *config) { c.rootCAs = pool } }

// Provider sends MDM pushes with one push certificate. It is safe for
// concurrent use.
type Provider struct {
	base       *url.URL
	timeout    time.Duration
	expiration time.Duration
	workers    int
	slots      chan struct{} // one per request in flight
	proxy      func(*url.URL) (*url.URL, error)
	dialer     *net.Dialer
	tlsConfig  *tls.Config
	transport  *http.Transport
	closed     atomic.Bool
}

// Factory makes Providers that share one set of options, checked once.
type Factory struct {
	c    config
	base *url.URL
}

// NewFactory checks opts and returns a Factory that applies them. The
// proxy environment variables are read now.
func NewFactory(opts ...Option) (*Factory, error) {
	c := config{baseURL: Production, workers: DefaultWorkers, timeout: DefaultTimeout}
	for _, o := range opts {
		o(&c)
	}
	u, err := url.Parse(c.baseURL)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return nil, fmt.Errorf("APNs base URL %q: want https://host[:port]", c.baseURL)
	}
	if c.workers < 1 {
		return nil, fmt.Errorf("push workers: have %d, want at least 1", c.workers)
	}
	if c.timeout <= 0 {
		return nil, fmt.Errorf("push timeout: have %v, want more than 0", c.timeout)
	}
	if c.expiration < 0 {
		return nil, fmt.Errorf("push expiration: have %v, want 0 (none) or more", c.expiration)
	}
	if c.proxy == nil {
		c.proxy = httpproxy.FromEnvironment().ProxyFunc()
	}
	return &Factory{c: c, base: &url.URL{Scheme: u.Scheme, Host: u.Host}}, nil
}

// New returns a Provider that authenticates with cert (which must hold
// its private key). It is NewFactory(opts...) then NewProvider(cert).
func New(cert *tls.Certificate, opts ...Option) (*Provider, error) {
	f, err := NewFactory(opts...)
	if err != nil {
		return nil, err
	}
	return f.NewProvider(cert)
}

// NewProvider returns a Provider that authenticates with cert (which
// must hold its private key).
func (f *Factory) NewProvider(cert *tls.Certificate) (*Provider, error) {
	if cert == nil || len(cert.Certificate) == 0 || cert.PrivateKey == nil {
		return nil, errors.New("push certificate with private key required")
	}
	c := f.c
	p := &Provider{
		base:       f.base,
		timeout:    c.timeout,
		expiration: c.expiration,
		workers:    c.workers,
		slots:      make(chan struct{}, c.workers),
		proxy:      c.proxy,
		dialer:     &net.Dialer{Timeout: c.timeout, KeepAlive: 30 * time.Second},
	}
	p.tlsConfig = &tls.Config{
		Certificates: []tls.Certificate{*cert},
		RootCAs:      c.rootCAs,
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{http2Proto},
	}
	// HTTP/2 only, on one connection per host shared between streams:
	// a batch starts with one handshake, not one per request in flight.
	var protocols http.Protocols
	protocols.SetHTTP2(true)
	p.transport = &http.Transport{
		Protocols:          &protocols,
		MaxConnsPerHost:    1,
		DialTLSContext:     p.dialTLS,
		DisableCompression: true,
		IdleConnTimeout:    15 * time.Minute,
		HTTP2: &http.HTTP2Config{
			// Ping a connection that has been silent this long and drop
			// it when the ping goes unanswered, so a connection that died
			// without a word (a NAT forgetting it, a crashed peer) is not
			// reused for ever.
			SendPingTimeout: max(c.timeout, 15*time.Second),
			PingTimeout:     min(c.timeout, 15*time.Second),
		},
	}
	return p, nil
}

// http2Proto is the ALPN name of HTTP/2 over TLS.
const http2Proto = "h2"

// dialTLS opens a connection to addr, through the proxy if one applies,
// and completes a TLS handshake that must agree on HTTP/2.
func (p *Provider) dialTLS(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	cfg := p.tlsConfig.Clone()
	cfg.ServerName = host
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	proxyURL, err := p.proxy(p.base)
	if err != nil {
		return nil, fmt.Errorf("choosing proxy: %w", err)
	}
	var conn net.Conn
	if proxyURL == nil {
		conn, err = p.dialer.DialContext(ctx, network, addr)
	} else {
		conn, err = p.dialProxy(ctx, proxyURL, addr)
	}
	if err != nil {
		return nil, err
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	if proto := tc.ConnectionState().NegotiatedProtocol; proto != http2Proto {
		tc.Close()
		return nil, fmt.Errorf("APNs server %s negotiated protocol %q, want %q", addr, proto, http2Proto)
	}
	return tc, nil
}

// dialProxy opens a tunnel to addr through an HTTP or HTTPS proxy with
// the CONNECT method.
func (p *Provider) dialProxy(ctx context.Context, proxyURL *url.URL, addr string) (net.Conn, error) {
	proxyAddr := proxyURL.Host
	if proxyURL.Port() == "" {
		port := "80"
		if proxyURL.Scheme == "https" {
			port = "443"
		}
		proxyAddr = net.JoinHostPort(proxyURL.Hostname(), port)
	}
	if proxyURL.Scheme != "http" && proxyURL.Scheme != "https" {
		return nil, fmt.Errorf("proxy %s: scheme %q not supported, want http or https", proxyAddr, proxyURL.Scheme)
	}
	conn, err := p.dialer.DialContext(ctx, "tcp", proxyAddr)
	if err != nil {
		return nil, fmt.Errorf("dialing proxy: %w", err)
	}
	if proxyURL.Scheme == "https" {
		conn = tls.Client(conn, &tls.Config{ServerName: proxyURL.Hostname(), MinVersion: tls.VersionTLS12})
	}
	// Give up on the proxy with ctx.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	req := &http.Request{
		Method: http.MethodConnect,
		URL:    &url.URL{Opaque: addr},
		Host:   addr,
		Header: http.Header{},
	}
	if u := proxyURL.User; u != nil {
		pass, _ := u.Password()
		req.Header.Set("Proxy-Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(u.Username()+":"+pass)))
	}
	if err := req.Write(conn); err != nil {
		conn.Close()
		return nil, fmt.Errorf("proxy %s: sending CONNECT: %w", proxyAddr, err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("proxy %s: reading CONNECT answer: %w", proxyAddr, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		conn.Close()
		return nil, fmt.Errorf("proxy %s: CONNECT answered %s", proxyAddr, resp.Status)
	}
	if br.Buffered() > 0 {
		conn.Close()
		return nil, fmt.Errorf("proxy %s: data before the TLS handshake", proxyAddr)
	}
	if !stop() || ctx.Err() != nil {
		conn.Close()
		return nil, fmt.Errorf("proxy %s: %w", proxyAddr, context.Cause(ctx))
	}
	return conn, nil
}

// ErrClosed is the result of pushes through a closed Provider.
var ErrClosed = errors.New("push provider closed")

// ErrUnresponsive is the result of the pushes a call gave up on after
// APNs let too many requests in a row time out (twice the workers, at
// least 10): a stalled server fails a large call within a few timeouts
// instead of one timeout per push.
var ErrUnresponsive = errors.New("push not sent: APNs stopped answering (consecutive timeouts)")

// Push sends one push per element of pushes, at most the configured
// number of workers at once, and returns their results in the same order:
// the apns-id, or the error for that token alone. Pushes not sent before
// ctx is done fail with its error; those not sent after APNs stopped
// answering fail with ErrUnresponsive.
func (p *Provider) Push(ctx context.Context, pushes []*mdm.Push) []push.Response {
	out := make([]push.Response, len(pushes))
	var next, stalls atomic.Int64
	limit := int64(max(2*p.workers, 10))
	var wg sync.WaitGroup
	for range min(p.workers, len(pushes)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(pushes) {
					return
				}
				if stalls.Load() >= limit {
					out[i].Err = ErrUnresponsive
					continue
				}
				var timedOut bool
				out[i], timedOut = p.push(ctx, pushes[i])
				if timedOut {
					stalls.Add(1)
				} else {
					stalls.Store(0)
				}
			}
		}()
	}
	wg.Wait()
	return out
}

// push sends one push once a worker slot is free. It reports whether the
// request timed out waiting for APNs.
func (p *Provider) push(ctx context.Context, info *mdm.Push) (push.Response, bool) {
	switch {
	case info == nil || len(info.Token) == 0:
		return push.Response{Err: errors.New("no device token")}, false
	case info.PushMagic == "":
		return push.Response{Err: errors.New("no push magic")}, false
	}
	select {
	case p.slots <- struct{}{}:
		defer func() { <-p.slots }()
	case <-ctx.Done():
		return push.Response{Err: fmt.Errorf("push not sent: %w", context.Cause(ctx))}, false
	}
	if err := ctx.Err(); err != nil {
		return push.Response{Err: fmt.Errorf("push not sent: %w", context.Cause(ctx))}, false
	}
	if p.closed.Load() {
		return push.Response{Err: ErrClosed}, false
	}
	id, err := p.send(ctx, info)
	timedOut := err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded)
	return push.Response{ID: id, Err: err}, timedOut
}

// payload is the body of an MDM push.
type payload struct {
	MDM string `json:"mdm"`
}

// errorBody is the JSON body of an APNs error answer.
type errorBody struct {
	Reason    string `json:"reason"`
	Timestamp int64  `json:"timestamp"`
}

// send makes one request to APNs and returns the apns-id.
func (p *Provider) send(ctx context.Context, info *mdm.Push) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	body, err := json.Marshal(payload{MDM: info.PushMagic})
	if err != nil {
		return "", fmt.Errorf("encoding push: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.base.String()+"/3/device/"+hex.EncodeToString(info.Token), bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("building push request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("apns-push-type", "mdm")
	if p.expiration > 0 {
		req.Header.Set("apns-expiration", strconv.FormatInt(time.Now().Add(p.expiration).Unix(), 10))
	}
	resp, err := p.transport.RoundTrip(req)
	if err != nil {
		return "", fmt.Errorf("sending push: %w", err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 {
		return "", fmt.Errorf("APNs answered over %s, HTTP/2 required", resp.Proto)
	}
	id := resp.Header.Get("apns-id")
	if resp.StatusCode == http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return id, nil
	}
	e := &Error{StatusCode: resp.StatusCode, APNsID: id}
	var eb errorBody
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&eb); err == nil {
		e.Reason = eb.Reason
		if eb.Timestamp > 0 {
			e.Timestamp = time.UnixMilli(eb.Timestamp)
		}
	}
	return "", e
}

// Close closes the Provider's connections once their requests are done.
// Later pushes fail with ErrClosed.
func (p *Provider) Close() {
	p.closed.Store(true)
	p.transport.CloseIdleConnections()
}
