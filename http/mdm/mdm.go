// Package mdm holds the HTTP handlers of the MDM endpoints (/mdm,
// /checkin) and the device-identity middleware in front of them. It turns
// an *http.Request into an *mdm.Request once and maps service errors to
// the status codes devices expect. It never answers 401.
package mdm

import (
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

// CertAdmitter decides from a verified certificate alone, before the body
// of a request is read, whether the request may go on. authenticate is
// false when the request cannot be an Authenticate check-in (it goes to
// the command report handler). The full check, which needs the enrollment
// named in the body, comes after. service/certauth implements it.
type CertAdmitter interface {
	AdmitCert(ctx context.Context, cert *x509.Certificate, authenticate bool) error
}

type options struct {
	logger      log.Logger
	bodyLimit   int64
	certHeader  string
	dumpRefused func([]byte)
	budget      *mdmhttp.BodyBudget
	admitter    CertAdmitter
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

// WithBodyBudget makes IdentityMiddleware reserve each body in b, once
// the identity is checked and before the body is read.
func WithBodyBudget(b *mdmhttp.BodyBudget) Option { return func(o *options) { o.budget = b } }

// WithCertAdmitter makes IdentityMiddleware ask a whether a verified
// certificate may send the request before its body is read.
func WithCertAdmitter(a CertAdmitter) Option { return func(o *options) { o.admitter = a } }

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

// IdentityMiddleware checks the device identity before it reads a byte
// of the body, then reads the body once for the handler after it:
//
//  1. the certificate is taken from the configured header, or from the
//     CMS in Mdm-Signature, and verified with verifier;
//  2. with WithCertAdmitter, the admitter is asked whether that
//     certificate may send the request;
//  3. with WithBodyBudget, the body is reserved in the budget;
//  4. the body is read (bounded), the Mdm-Signature is verified over it,
//     and the request goes on with the certificate in its context and the
//     body held (mdmhttp.HoldBody), so the handler reads it without a copy.
//
// No usable certificate is answered 400 (never 401), an admitter's
// refusal as statusFor says, a full budget 503, a body too large 413, a
// slow one 408; the first three without reading the body.
func IdentityMiddleware(next http.Handler, verifier CertVerifier, opts ...Option) http.Handler {
	o := newOptions(opts)
	mayAuthenticate := func(*http.Request) bool { return true }
	if h, ok := next.(checkinTaker); ok {
		mayAuthenticate = h.takesCheckin
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		logger := log.From(r.Context(), o.logger)
		var cert *x509.Certificate
		var sig *cryptoutil.MdmSignature
		var err error
		if o.certHeader != "" {
			cert, err = cryptoutil.ParseCertHeader(r.Header.Get(o.certHeader))
		} else if sig, err = cryptoutil.ParseMdmSignature(r.Header.Get("Mdm-Signature")); err == nil {
			cert = sig.Certificate()
		}
		if err == nil {
			err = verifier.Verify(cert)
		}
		if err != nil {
			dumpRefused(w, r, o, logger)
			writeError(w, logger, &identityError{err})
			return
		}
		if o.admitter != nil {
			if err := o.admitter.AdmitCert(r.Context(), cert, mayAuthenticate(r)); err != nil {
				writeError(w, logger, err)
				return
			}
		}
		if o.budget != nil {
			release, ok := o.budget.ReserveBody(w, r, o.bodyLimit)
			if !ok {
				logger.Info("msg", "request body refused before reading", "content_length", r.ContentLength)
				return
			}
			defer release()
		}
		body, ok := readBody(w, r, o.bodyLimit, logger)
		if !ok {
			return
		}
		if sig != nil {
			if err := sig.Verify(body); err != nil {
				if o.dumpRefused != nil {
					o.dumpRefused(body)
				}
				writeError(w, logger, &identityError{err})
				return
			}
		}
		r = r.WithContext(context.WithValue(r.Context(), certKey{}, cert))
		mdmhttp.HoldBody(r, body)
		next.ServeHTTP(w, r)
	})
}

// dumpRefused reads, within the body budget and limit, the body of a
// request refused for its identity and hands it to -dump. Only a server
// run with -dump reads such a body: it is a debugging aid, and the
// operator asked for it.
func dumpRefused(w http.ResponseWriter, r *http.Request, o *options, logger log.Logger) {
	if o.dumpRefused == nil {
		return
	}
	if o.budget != nil {
		release, err := o.budget.Reserve(r.Context(), o.bodyLimit)
		if err != nil {
			logger.Info("msg", "refused request not dumped", "err", err)
			return
		}
		defer release()
	}
	if body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, o.bodyLimit)); err == nil {
		o.dumpRefused(body)
	} else {
		logger.Info("msg", "refused request not dumped", "err", err)
	}
}

// checkinTaker is a device handler that knows whether a request to it
// could be a check-in (and so an Authenticate).
type checkinTaker interface {
	takesCheckin(r *http.Request) bool
}

// deviceHandler is a device handler with the rule saying which of its
// requests could be check-ins.
type deviceHandler struct {
	http.Handler
	checkin func(r *http.Request) bool
}

func (h deviceHandler) takesCheckin(r *http.Request) bool { return h.checkin(r) }

func always(*http.Request) bool { return true }
func never(*http.Request) bool  { return false }

// isCheckin reports whether r carries a check-in by its Content-Type.
func isCheckin(r *http.Request) bool {
	return strings.HasPrefix(r.Header.Get("Content-Type"), mdm.CheckinContentType)
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
	return deviceHandler{handle(newOptions(opts), mdm.DecodeCheckin, svc.Checkin), always}
}

// CommandAndReportResultsHandler handles command reports and answers with
// the next command.
func CommandAndReportResultsHandler(svc service.CommandAndReportResults, opts ...Option) http.Handler {
	return deviceHandler{handle(newOptions(opts), mdm.DecodeCommandResults, func(r *mdm.Request, report *mdm.CommandResults) ([]byte, error) {
		cmd, err := svc.CommandAndReportResults(r, report)
		if err != nil || cmd == nil {
			return nil, err
		}
		return cmd.Raw, nil
	}), never}
}

// CheckinAndCommandHandler sends check-ins (by Content-Type) to the
// check-in handler and everything else to the command report handler.
func CheckinAndCommandHandler(svc service.CheckinAndCommandService, opts ...Option) http.Handler {
	checkin := CheckinHandler(svc, opts...)
	command := CommandAndReportResultsHandler(svc, opts...)
	return deviceHandler{http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isCheckin(r) {
			checkin.ServeHTTP(w, r)
			return
		}
		command.ServeHTTP(w, r)
	}), isCheckin}
}
