// Package mdm holds the HTTP handlers of the MDM endpoints (/mdm,
// /checkin) and the device-identity middleware in front of them. It turns
// an *http.Request into an *mdm.Request once and maps service errors to
// the status codes devices expect. It never answers 401.
package mdm

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/nanomdm/nanomdm/cryptoutil"
	mdmhttp "github.com/nanomdm/nanomdm/http"
	"github.com/nanomdm/nanomdm/log"
	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/service"
)

// DefaultBodyLimit bounds a device request body unless configured.
const DefaultBodyLimit = 10 << 20

// CertVerifier decides whether a device identity certificate is trusted.
type CertVerifier interface {
	Verify(cert *x509.Certificate) error
}

type options struct {
	logger      log.Logger
	bodyLimit   int64
	certHeader  string
	dumpRefused func([]byte)
}

// Option configures the handlers and middleware of this package.
type Option func(*options)

// WithLogger sets the logger.
func WithLogger(l log.Logger) Option { return func(o *options) { o.logger = l } }

// WithBodyLimit bounds request bodies; larger ones are answered 413.
func WithBodyLimit(n int64) Option { return func(o *options) { o.bodyLimit = n } }

// WithCertHeader reads the device certificate from the named header
// (set by a TLS-terminating proxy) instead of Mdm-Signature.
func WithCertHeader(name string) Option { return func(o *options) { o.certHeader = name } }

// WithDumpRefused hands the body of every request that the identity check
// refuses to dump (the -dump output): those never reach the services.
func WithDumpRefused(dump func([]byte)) Option { return func(o *options) { o.dumpRefused = dump } }

func newOptions(opts []Option) *options {
	o := &options{logger: log.Nop, bodyLimit: DefaultBodyLimit}
	for _, f := range opts {
		f(o)
	}
	return o
}

// identityError marks a failure to obtain or verify the device identity.
type identityError struct{ err error }

func (e *identityError) Error() string { return "device identity: " + e.err.Error() }
func (e *identityError) Unwrap() error { return e.err }

type certKey struct{}

// CertFromContext returns the verified device certificate of a request
// that passed IdentityMiddleware.
func CertFromContext(ctx context.Context) *x509.Certificate {
	c, _ := ctx.Value(certKey{}).(*x509.Certificate)
	return c
}

// IdentityMiddleware reads the request body (bounded), extracts the device
// certificate from Mdm-Signature or the configured header, verifies it
// with verifier, and passes the request on with the certificate in its
// context and the body ready to be read again. Failures are answered 400
// (never 401), 408 or 413.
func IdentityMiddleware(next http.Handler, verifier CertVerifier, opts ...Option) http.Handler {
	o := newOptions(opts)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		logger := log.From(r.Context(), o.logger)
		body, ok := readBody(w, r, o.bodyLimit, logger)
		if !ok {
			return
		}
		var cert *x509.Certificate
		var err error
		if o.certHeader != "" {
			cert, err = cryptoutil.ParseCertHeader(r.Header.Get(o.certHeader))
		} else {
			cert, err = cryptoutil.VerifyMdmSignature(r.Header.Get("Mdm-Signature"), body)
		}
		if err == nil {
			err = verifier.Verify(cert)
		}
		if err != nil {
			if o.dumpRefused != nil {
				o.dumpRefused(body)
			}
			writeError(w, logger, &identityError{err})
			return
		}
		ctx := context.WithValue(r.Context(), certKey{}, cert)
		r = r.WithContext(ctx)
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		next.ServeHTTP(w, r)
	})
}

// statusFor maps an error to the status a device is answered with.
func statusFor(err error) int {
	var ie *identityError
	var se *service.StatusError
	switch {
	case errors.As(err, &se):
		return se.Status
	case errors.As(err, &ie):
		return http.StatusBadRequest
	case errors.Is(err, service.ErrDeclined):
		return http.StatusGone
	case errors.Is(err, mdm.ErrDecode),
		errors.Is(err, mdm.ErrUnrecognizedMessageType),
		errors.Is(err, mdm.ErrNoStatus),
		errors.Is(err, mdm.ErrInvalidID):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

func writeError(w http.ResponseWriter, logger log.Logger, err error) {
	status := statusFor(err)
	logger.Info("msg", "mdm request failed", "status", status, "err", err)
	var se *service.StatusError
	if errors.As(err, &se) {
		w.WriteHeader(se.Status)
		w.Write(se.Body)
		return
	}
	http.Error(w, http.StatusText(status), status)
}

// newRequest builds the service request for a decoded message.
func newRequest(r *http.Request, msg any) (*mdm.Request, error) {
	e := mdm.EnrollmentOf(msg)
	if e == nil {
		return nil, mdm.ErrInvalidEnrollment
	}
	id, err := e.Resolve()
	if err != nil {
		return nil, err
	}
	ctx := log.WithFields(r.Context(), "id", id.ID, "type", id.Type.String())
	req := &mdm.Request{
		Context:     ctx,
		EnrollID:    id,
		Certificate: CertFromContext(r.Context()),
	}
	if q := r.URL.Query(); len(q) > 0 {
		req.Params = make(map[string]string, len(q))
		for k := range q {
			req.Params[k] = q.Get(k)
		}
	}
	return req, nil
}

func writeBody(w http.ResponseWriter, body []byte) {
	if len(body) > 0 {
		w.Header().Set("Content-Type", "application/xml")
	}
	w.Write(body)
}

// handle reads the body, decodes it with decode, builds the service
// request and writes what answer returns, mapping every error to the
// status a device expects.
func handle[M any](o *options, decode func([]byte) (M, error), answer func(*mdm.Request, M) ([]byte, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		logger := log.From(r.Context(), o.logger)
		raw, ok := readBody(w, r, o.bodyLimit, logger)
		if !ok {
			return
		}
		msg, err := decode(raw)
		if err != nil {
			writeError(w, logger, err)
			return
		}
		req, err := newRequest(r, msg)
		if err != nil {
			writeError(w, logger, err)
			return
		}
		body, err := answer(req, msg)
		if err != nil {
			writeError(w, log.From(req.Context, o.logger), err)
			return
		}
		writeBody(w, body)
	})
}

// readBody reads the bounded body, answering 408, 413 or 500 itself when
// that fails.
func readBody(w http.ResponseWriter, r *http.Request, limit int64, logger log.Logger) ([]byte, bool) {
	raw, err := mdmhttp.ReadBody(w, r, limit)
	if err != nil {
		status := mdmhttp.BodyStatus(err)
		logger.Info("msg", "reading body", "status", status, "err", err)
		http.Error(w, http.StatusText(status), status)
		return nil, false
	}
	return raw, true
}

// CheckinHandler handles check-in messages.
func CheckinHandler(svc service.Checkin, opts ...Option) http.Handler {
	return handle(newOptions(opts), mdm.DecodeCheckin, func(r *mdm.Request, msg any) ([]byte, error) {
		return service.CheckinRequest(svc, r, msg)
	})
}

// CommandAndReportResultsHandler handles command reports and answers with
// the next command.
func CommandAndReportResultsHandler(svc service.CommandAndReportResults, opts ...Option) http.Handler {
	return handle(newOptions(opts), mdm.DecodeCommandResults, func(r *mdm.Request, report *mdm.CommandResults) ([]byte, error) {
		cmd, err := svc.CommandAndReportResults(r, report)
		if err != nil || cmd == nil {
			return nil, err
		}
		return cmd.Raw, nil
	})
}

// CheckinAndCommandHandler sends check-ins (by Content-Type) to the
// check-in handler and everything else to the command report handler.
func CheckinAndCommandHandler(svc service.CheckinAndCommandService, opts ...Option) http.Handler {
	checkin := CheckinHandler(svc, opts...)
	command := CommandAndReportResultsHandler(svc, opts...)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.Header.Get("Content-Type"), mdm.CheckinContentType) {
			checkin.ServeHTTP(w, r)
			return
		}
		command.ServeHTTP(w, r)
	})
}
