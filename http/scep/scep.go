package scep

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/smallstep/pkcs7"
	smallscep "github.com/smallstep/scep"

	mdmhttp "github.com/nanomdm/nanomdm/http"
	"github.com/nanomdm/nanomdm/log"
)

// DefaultBodyLimit bounds a PKIOperation message: a CSR with a 4096-bit
// key, signed and enveloped, is a few kilobytes.
const DefaultBodyLimit = 64 << 10

// capabilities are what GetCACaps announces: POST for PKIOperation,
// SHA-256 and AES for the envelope, renewal with an existing identity.
const capabilities = "POSTPKIOperation\nRenewal\nSHA-1\nSHA-256\nAES\nDES3\nSCEPStandard\n"

// Outcome is what became of a PKIOperation, for metrics.
type Outcome string

// Outcomes of PKIOperation.
const (
	Issued          Outcome = "issued"            // a certificate was issued with a good challenge
	Renewed         Outcome = "renewed"           // a certificate was issued to the holder of a valid identity
	BadChallenge    Outcome = "bad_challenge"     // refused: wrong, used or expired challenge (badRequest)
	BadRequest      Outcome = "bad_request"       // refused: unsupported message type or unusable CSR (badRequest)
	BadMessageCheck Outcome = "bad_message_check" // refused: envelope not decryptable or CSR signature bad (badMessageCheck)
	Malformed       Outcome = "malformed"         // not a SCEP message: HTTP 400, no SCEP answer possible
	Failed          Outcome = "failed"            // server-side error: HTTP 500
)

// Observer is told the outcome of each PKIOperation.
type Observer interface {
	ObserveSCEP(Outcome)
}

type nopObserver struct{}

func (nopObserver) ObserveSCEP(Outcome) {}

// Option configures the handler.
type Option func(*handler)

// WithLogger sets the logger (default: none).
func WithLogger(l log.Logger) Option { return func(h *handler) { h.logger = l } }

// WithObserver sets who is told each outcome (default: nobody).
func WithObserver(o Observer) Option { return func(h *handler) { h.observer = o } }

// WithBodyLimit bounds PKIOperation messages (default DefaultBodyLimit);
// larger ones are answered 413.
func WithBodyLimit(n int64) Option { return func(h *handler) { h.bodyLimit = n } }

type handler struct {
	ca         *CA
	challenges *Challenges
	logger     log.Logger
	observer   Observer
	bodyLimit  int64
}

// Handler serves SCEP: GET ?operation=GetCACert, GetCACaps, and
// PKIOperation (POST body, or GET with a base64 message parameter).
// Refusals are SCEP CertRep failures (HTTP 200): badRequest for a bad
// challenge or request, badMessageCheck for an envelope or CSR that does
// not check out. Input that is not a SCEP message at all gets 400.
func Handler(ca *CA, challenges *Challenges, opts ...Option) http.Handler {
	h := &handler{ca: ca, challenges: challenges, logger: log.Nop, observer: nopObserver{}, bodyLimit: DefaultBodyLimit}
	for _, opt := range opts {
		opt(h)
	}
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	op := r.URL.Query().Get("operation")
	switch {
	case op == "GetCACert" && r.Method == http.MethodGet:
		w.Header().Set("Content-Type", "application/x-x509-ca-cert")
		w.Write(h.ca.cert.Raw)
	case op == "GetCACaps" && r.Method == http.MethodGet:
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, capabilities)
	case op == "PKIOperation" && (r.Method == http.MethodGet || r.Method == http.MethodPost):
		h.pkiOperation(w, r)
	case op == "GetCACert" || op == "GetCACaps" || op == "PKIOperation":
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	default:
		http.Error(w, "unknown SCEP operation", http.StatusBadRequest)
	}
}

// readMessage returns the PKIOperation message: the POST body, or the GET
// message parameter (base64, standard or URL alphabet).
func (h *handler) readMessage(w http.ResponseWriter, r *http.Request) ([]byte, int, error) {
	if r.Method == http.MethodPost {
		b, err := mdmhttp.ReadBody(w, r, h.bodyLimit)
		if err != nil {
			return nil, mdmhttp.BodyStatus(err), err
		}
		return b, http.StatusOK, nil
	}
	m := r.URL.Query().Get("message")
	if int64(base64.StdEncoding.DecodedLen(len(m))) > h.bodyLimit {
		return nil, http.StatusRequestEntityTooLarge, errors.New("message parameter too large")
	}
	m = strings.NewReplacer("-", "+", "_", "/", " ", "+").Replace(m)
	b, err := base64.StdEncoding.DecodeString(m)
	if err != nil {
		b, err = base64.RawStdEncoding.DecodeString(m)
	}
	if err != nil {
		return nil, http.StatusBadRequest, err
	}
	return b, http.StatusOK, nil
}

func (h *handler) pkiOperation(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	logger := log.From(ctx, h.logger)
	raw, status, err := h.readMessage(w, r)
	if err != nil {
		h.observer.ObserveSCEP(Malformed)
		logger.Info("msg", "reading SCEP message", "err", err)
		http.Error(w, http.StatusText(status), status)
		return
	}
	msg, err := smallscep.ParsePKIMessage(raw)
	if err != nil {
		h.observer.ObserveSCEP(Malformed)
		logger.Info("msg", "parsing SCEP message", "err", err)
		http.Error(w, "not a SCEP message", http.StatusBadRequest)
		return
	}
	logger = logger.With("transaction_id", string(msg.TransactionID), "message_type", string(msg.MessageType))
	fail := func(o Outcome, info smallscep.FailInfo, why string, err error) {
		h.observer.ObserveSCEP(o)
		logger.Info("msg", "refusing SCEP request", "reason", why, "err", err)
		h.reply(w, logger, func() (*smallscep.PKIMessage, error) { return msg.Fail(h.ca.cert, h.ca.key, info) })
	}
	switch msg.MessageType {
	case smallscep.PKCSReq, smallscep.RenewalReq, smallscep.UpdateReq:
	default:
		fail(BadRequest, smallscep.BadRequest, "unsupported message type", nil)
		return
	}
	if err := msg.DecryptPKIEnvelope(h.ca.cert, h.ca.key); err != nil {
		fail(BadMessageCheck, smallscep.BadMessageCheck, "envelope not decryptable", err)
		return
	}
	csr := msg.CSRReqMessage.CSR
	if err := csr.CheckSignature(); err != nil {
		fail(BadMessageCheck, smallscep.BadMessageCheck, "CSR signature", err)
		return
	}
	outcome := Issued
	if h.ca.issuedByUs(signer(raw)) {
		outcome = Renewed
	} else {
		ok, err := h.challenges.Check(ctx, msg.CSRReqMessage.ChallengePassword)
		if err != nil {
			h.observer.ObserveSCEP(Failed)
			logger.Info("msg", "checking challenge", "err", err)
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		if !ok {
			fail(BadChallenge, smallscep.BadRequest, "wrong, used or expired challenge", nil)
			return
		}
	}
	cert, err := h.ca.Issue(csr)
	if err != nil {
		fail(BadRequest, smallscep.BadRequest, "unusable CSR", err)
		return
	}
	h.observer.ObserveSCEP(outcome)
	logger.Info("msg", "issued device identity", "outcome", string(outcome), "serial", cert.SerialNumber.Text(16), "subject", cert.Subject.String(), "not_after", cert.NotAfter)
	h.reply(w, logger, func() (*smallscep.PKIMessage, error) { return msg.Success(h.ca.cert, h.ca.key, cert) })
}

// reply writes the CertRep that build makes, or 500.
func (h *handler) reply(w http.ResponseWriter, logger log.Logger, build func() (*smallscep.PKIMessage, error)) {
	rep, err := build()
	if err != nil {
		logger.Info("msg", "building SCEP reply", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/x-pki-message")
	io.Copy(w, bytes.NewReader(rep.Raw))
}

// signer returns the certificate that signed a PKIOperation message, or
// nil. A first enrollment is signed with a throwaway self-signed
// certificate; a renewal with the identity being renewed.
func signer(raw []byte) (cert *x509.Certificate) {
	p7, err := pkcs7.Parse(raw)
	if err != nil {
		return nil
	}
	return p7.GetOnlySigner()
}
