package api

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	mdmhttp "github.com/nanomdm/nanomdm/http"
	"github.com/nanomdm/nanomdm/log"
	"github.com/nanomdm/nanomdm/storage"
)

// EscrowKeyUnlockURL is Apple's escrow key unlock service, which clears
// the Activation Lock of a device with the bypass code (escrow key) the
// MDM server collected.
const EscrowKeyUnlockURL = "https://deviceservices-external.apple.com/deviceservicesworkers/escrowKeyUnlock"

// maxEscrowAnswer bounds the answer of the unlock service we pass back.
const maxEscrowAnswer = 1 << 20

// EscrowKeyUnlockTarget says where and how the unlock service is reached.
// The zero value means Apple's service, the system roots and a 30 s
// timeout.
type EscrowKeyUnlockTarget struct {
	// URL replaces EscrowKeyUnlockURL (for tests and proxies).
	URL string
	// RootCAs replaces the system roots for verifying the service.
	RootCAs *x509.CertPool
	// Timeout bounds the whole call.
	Timeout time.Duration
}

// escrowQueryFields go to the service in the URL query, escrowBodyFields
// in the form body; the first block of each is required.
var (
	escrowQueryFields    = []string{"serial", "productType"}
	escrowOptionalFields = []string{"imei", "imei2", "meid"}
	escrowBodyFields     = []string{"escrowKey", "orgName", "guid"}
)

// EscrowKeyUnlockHandler asks Apple's escrow key unlock service to clear
// a device's Activation Lock. It takes the form fields topic, serial,
// productType, escrowKey, orgName and guid (required) and imei, imei2 and
// meid (optional), calls the service with the topic's push certificate as
// TLS client identity, and answers with the service's status and body.
// Missing fields are answered 400 naming them; a topic without a push
// certificate 400; a service that cannot be reached 502.
func EscrowKeyUnlockHandler(store storage.PushCertRetriever, target EscrowKeyUnlockTarget, opts ...Option) http.Handler {
	o := newOptions(opts)
	if target.URL == "" {
		target.URL = EscrowKeyUnlockURL
	}
	if target.Timeout <= 0 {
		target.Timeout = 30 * time.Second
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		logger := log.From(r.Context(), o.logger)
		if o.bodyLimit > 0 {
			r.Body = http.MaxBytesReader(w, r.Body, o.bodyLimit)
		}
		if err := r.ParseForm(); err != nil {
			status := http.StatusBadRequest
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				status = http.StatusRequestEntityTooLarge
			}
			mdmhttp.WriteJSONError(w, status, fmt.Errorf("reading form: %w", err))
			return
		}
		var missing []string
		for _, f := range append(append([]string{"topic"}, escrowQueryFields...), escrowBodyFields...) {
			if strings.TrimSpace(r.Form.Get(f)) == "" {
				missing = append(missing, f)
			}
		}
		if len(missing) > 0 {
			mdmhttp.WriteJSONError(w, http.StatusBadRequest, fmt.Errorf("missing required form fields: %s", strings.Join(missing, ", ")))
			return
		}
		topic := r.Form.Get("topic")
		logger = logger.With("topic", topic, "serial_number", r.Form.Get("serial"))
		cert, _, err := store.RetrievePushCert(r.Context(), topic)
		if errors.Is(err, storage.ErrNoPushCert) {
			mdmhttp.WriteJSONError(w, http.StatusBadRequest, err)
			return
		}
		if err != nil {
			logger.Info("msg", "escrow key unlock", "err", err)
			mdmhttp.WriteJSONError(w, http.StatusInternalServerError, fmt.Errorf("retrieving push certificate for topic %q: %w", topic, err))
			return
		}
		resp, err := callEscrowKeyUnlock(r.Context(), target, cert, r.Form)
		if err != nil {
			logger.Info("msg", "escrow key unlock", "err", err)
			mdmhttp.WriteJSONError(w, http.StatusBadGateway, err)
			return
		}
		logger.Info("msg", "escrow key unlock", "status", resp.status)
		if resp.contentType != "" {
			w.Header().Set("Content-Type", resp.contentType)
		}
		w.WriteHeader(resp.status)
		w.Write(resp.body)
	})
}

type escrowAnswer struct {
	status      int
	contentType string
	body        []byte
}

// callEscrowKeyUnlock sends one unlock request, authenticated with cert.
func callEscrowKeyUnlock(ctx context.Context, target EscrowKeyUnlockTarget, cert *tls.Certificate, form url.Values) (*escrowAnswer, error) {
	u, err := url.Parse(target.URL)
	if err != nil {
		return nil, fmt.Errorf("parsing escrow key unlock URL: %w", err)
	}
	q := u.Query()
	for _, f := range append(append([]string{}, escrowQueryFields...), escrowOptionalFields...) {
		if v := form.Get(f); v != "" {
			q.Set(f, v)
		}
	}
	u.RawQuery = q.Encode()
	body := url.Values{}
	for _, f := range escrowBodyFields {
		body.Set(f, form.Get(f))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), strings.NewReader(body.Encode()))
	if err != nil {
		return nil, fmt.Errorf("building escrow key unlock request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	// A transport per call: the client identity differs per topic and
	// unlocks are rare, so there is nothing worth pooling.
	transport := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		TLSClientConfig: &tls.Config{
			Certificates: []tls.Certificate{*cert},
			RootCAs:      target.RootCAs,
			MinVersion:   tls.VersionTLS12,
		},
		DisableKeepAlives: true,
		ForceAttemptHTTP2: true,
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: target.Timeout}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("calling escrow key unlock service: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxEscrowAnswer))
	if err != nil {
		return nil, fmt.Errorf("reading escrow key unlock answer: %w", err)
	}
	return &escrowAnswer{status: resp.StatusCode, contentType: resp.Header.Get("Content-Type"), body: b}, nil
}
