// Package authproxy reverse-proxies requests of enrolled devices to
// another HTTP service, telling it which enrollment is calling. It sits
// behind the same device-identity middleware as /mdm: only a request
// whose certificate verified and is bound to a known enrollment reaches
// the upstream, with X-Enrollment-ID and X-Trace-ID headers added.
package authproxy

import (
	"context"
	"errors"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"

	"github.com/nanomdm/nanomdm/cryptoutil"
	mdmhttp "github.com/nanomdm/nanomdm/http"
	httpmdm "github.com/nanomdm/nanomdm/http/mdm"
	"github.com/nanomdm/nanomdm/log"
	"github.com/nanomdm/nanomdm/storage"
)

// Headers added to every proxied request. Values a client sent in them
// itself are replaced.
const (
	EnrollmentIDHeader = "X-Enrollment-ID"
	TraceIDHeader      = "X-Trace-ID"
)

// DefaultResponseHeaderTimeout bounds the wait for the upstream's answer
// headers (bodies may stream for longer).
const DefaultResponseHeaderTimeout = 30 * time.Second

// EnrollmentFinder finds the enrollment a device identity certificate is
// bound to (by certauth's association of certificate hashes).
type EnrollmentFinder interface {
	// RetrieveEnrollmentIDByCertHash returns the device-channel enrollment
	// ID that hash (cryptoutil.CertHash of the certificate) is associated
	// with. It returns an error wrapping storage.ErrUnknownEnrollment, or
	// an empty ID, when the hash is associated with none.
	RetrieveEnrollmentIDByCertHash(ctx context.Context, hash string) (string, error)
}

// Proxy is the /authproxy/ handler.
type Proxy struct {
	finder    EnrollmentFinder
	logger    log.Logger
	transport http.RoundTripper
	proxy     *httputil.ReverseProxy
}

// Option configures a Proxy.
type Option func(*Proxy)

// WithLogger sets the logger.
func WithLogger(l log.Logger) Option { return func(p *Proxy) { p.logger = l } }

// WithTransport sets the transport to the upstream.
func WithTransport(t http.RoundTripper) Option { return func(p *Proxy) { p.transport = t } }

type enrollmentKey struct{}

// New returns a Proxy to target. Mount it behind
// httpmdm.IdentityMiddleware and http.StripPrefix: the remaining path is
// appended to target's path.
func New(target *url.URL, finder EnrollmentFinder, opts ...Option) *Proxy {
	p := &Proxy{finder: finder, logger: log.Nop}
	for _, o := range opts {
		o(p)
	}
	if p.transport == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.ResponseHeaderTimeout = DefaultResponseHeaderTimeout
		p.transport = t
	}
	p.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
			id, _ := pr.In.Context().Value(enrollmentKey{}).(string)
			pr.Out.Header.Set(EnrollmentIDHeader, id)
			pr.Out.Header.Set(TraceIDHeader, mdmhttp.TraceID(pr.In.Context()))
		},
		Transport: p.transport,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			log.From(r.Context(), p.logger).Info("msg", "auth proxy upstream", "err", err)
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	return p
}

// ServeHTTP refuses requests without a verified certificate (400) or
// whose certificate belongs to no enrollment (403) and proxies the rest.
// It never answers 401.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	logger := log.From(r.Context(), p.logger)
	cert := httpmdm.CertFromContext(r.Context())
	if cert == nil {
		logger.Info("msg", "auth proxy refused", "err", "no verified device certificate")
		http.Error(w, http.StatusText(http.StatusBadRequest), http.StatusBadRequest)
		return
	}
	hash := cryptoutil.CertHash(cert)
	id, err := p.finder.RetrieveEnrollmentIDByCertHash(r.Context(), hash)
	if err == nil && id == "" {
		err = storage.ErrUnknownEnrollment
	}
	switch {
	case errors.Is(err, storage.ErrUnknownEnrollment):
		logger.Info("msg", "auth proxy refused", "cert_hash", hash, "err", err)
		http.Error(w, http.StatusText(http.StatusForbidden), http.StatusForbidden)
		return
	case err != nil:
		logger.Info("msg", "auth proxy enrollment lookup", "cert_hash", hash, "err", err)
		http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
		return
	}
	ctx := log.WithFields(r.Context(), "id", id)
	ctx = context.WithValue(ctx, enrollmentKey{}, id)
	p.proxy.ServeHTTP(w, r.WithContext(ctx))
}
