package main

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/nanomdm/nanomdm/cryptoutil"
	mdmhttp "github.com/nanomdm/nanomdm/http"
	"github.com/nanomdm/nanomdm/http/enroll"
	"github.com/nanomdm/nanomdm/http/scep"
	"github.com/nanomdm/nanomdm/log"
	"github.com/nanomdm/nanomdm/metrics"
	"github.com/nanomdm/nanomdm/storage"
)

// enrollConfig is the flags of the enrollment profile and the embedded
// SCEP server.
type enrollConfig struct {
	publicURL       string
	enroll          bool
	topic           string
	token           string
	scepURL         string
	scepChallenge   string
	acmeURL         string
	acmeHardware    bool
	acmeAttest      bool
	signCert        string
	signKey         string
	rootCA          string
	caCert          string
	caKey           string
	staticChallenge string
	certDays        int
	challengeTTL    time.Duration
}

// register adds the enrollment flags to fs.
func (c *enrollConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&c.publicURL, "public-url", "", "URL devices reach this server at through the TLS proxy, e.g. https://mdm.example.com; used in enrollment profiles")
	fs.BoolVar(&c.enroll, "enroll", false, "serve the enrollment profile at /mdm/enroll (needs -public-url)")
	fs.StringVar(&c.topic, "enroll-topic", "", "push topic in the enrollment profile; empty takes it from the one stored push certificate")
	fs.StringVar(&c.token, "enroll-token", "", "require ?token=THIS to download the enrollment profile")
	fs.StringVar(&c.scepURL, "enroll-scep-url", "", "SCEP URL in the enrollment profile for an external SCEP server (default: -public-url/scep, the embedded one)")
	fs.StringVar(&c.scepChallenge, "enroll-scep-challenge", "", "SCEP challenge in the enrollment profile for an external SCEP server")
	fs.StringVar(&c.acmeURL, "enroll-acme-url", "", "ACME directory URL: the profile gets an ACME identity payload (external ACME CA) instead of SCEP")
	fs.BoolVar(&c.acmeHardware, "enroll-acme-hardware-bound", true, "ACME payload: keep the identity key in the Secure Enclave (HardwareBound)")
	fs.BoolVar(&c.acmeAttest, "enroll-acme-attest", false, "ACME payload: attest the hardware-bound key to the ACME server (Attest)")
	fs.StringVar(&c.signCert, "enroll-sign-cert", "", "PEM certificate (and chain) to sign the enrollment profile with (needs -enroll-sign-key)")
	fs.StringVar(&c.signKey, "enroll-sign-key", "", "PEM private key of -enroll-sign-cert")
	fs.StringVar(&c.rootCA, "enroll-root-ca", "", "PEM CA certificate to install with the enrollment profile as a trusted root")
	fs.StringVar(&c.caCert, "scep-ca-cert", "", "PEM CA certificate of the embedded SCEP server at /scep (needs -scep-ca-key); it is trusted for device identities in addition to -ca")
	fs.StringVar(&c.caKey, "scep-ca-key", "", "PEM RSA private key of -scep-ca-cert")
	fs.StringVar(&c.staticChallenge, "scep-challenge", "", "static challenge the embedded SCEP server accepts (and enrollment profiles carry); empty: one-time challenges only")
	fs.IntVar(&c.certDays, "scep-cert-days", scep.DefaultCertDays, "validity in days of device identities the embedded SCEP server issues")
	fs.DurationVar(&c.challengeTTL, "scep-challenge-ttl", scep.DefaultChallengeTTL, "how long a one-time SCEP challenge stays valid")
}

// embedded reports whether the embedded SCEP server runs.
func (c *enrollConfig) embedded() bool { return c.caCert != "" }

// check validates the enrollment flags before anything is opened.
func (c *enrollConfig) check(disableMDM bool) error {
	if c.publicURL != "" {
		if err := checkHTTPURL(c.publicURL); err != nil {
			return fmt.Errorf("-public-url: %w", err)
		}
	}
	if (c.caCert == "") != (c.caKey == "") {
		return errors.New("-scep-ca-cert and -scep-ca-key go together")
	}
	if (c.signCert == "") != (c.signKey == "") {
		return errors.New("-enroll-sign-cert and -enroll-sign-key go together")
	}
	if c.embedded() && disableMDM {
		return errors.New("-scep-ca-cert issues MDM identities: not with -disable-mdm")
	}
	if c.staticChallenge != "" && !c.embedded() {
		return errors.New("-scep-challenge needs the embedded SCEP server (-scep-ca-cert)")
	}
	if !c.enroll {
		return nil
	}
	switch {
	case disableMDM:
		return errors.New("-enroll needs the MDM endpoints: not with -disable-mdm")
	case c.publicURL == "":
		return errors.New("-enroll needs -public-url, the URL devices reach the server at")
	case c.acmeURL != "" && (c.scepURL != "" || c.scepChallenge != ""):
		return errors.New("-enroll-acme-url and -enroll-scep-url/-enroll-scep-challenge exclude each other")
	case c.acmeURL == "" && c.scepURL == "" && !c.embedded():
		return errors.New("-enroll needs an identity source: -scep-ca-cert (embedded SCEP), -enroll-scep-url or -enroll-acme-url")
	case c.scepURL != "" && c.scepChallenge == "" && !c.embedded():
		return errors.New("-enroll-scep-url needs -enroll-scep-challenge")
	case c.acmeAttest && !c.acmeHardware:
		return errors.New("-enroll-acme-attest needs -enroll-acme-hardware-bound")
	}
	return nil
}

// loadSCEP returns the embedded SCEP server's CA and challenges, or nils
// without -scep-ca-cert.
func (c *enrollConfig) loadSCEP(store storage.AllStorage) (*scep.CA, *scep.Challenges, error) {
	if !c.embedded() {
		return nil, nil, nil
	}
	certPEM, err := os.ReadFile(c.caCert)
	if err != nil {
		return nil, nil, fmt.Errorf("reading -scep-ca-cert: %w", err)
	}
	keyPEM, err := os.ReadFile(c.caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("reading -scep-ca-key: %w", err)
	}
	ca, err := scep.NewCA(certPEM, keyPEM, scep.WithCertDays(c.certDays))
	if err != nil {
		return nil, nil, fmt.Errorf("SCEP CA %s: %w", c.caCert, err)
	}
	challenges, ok := store.(storage.SCEPChallengeStore)
	if !ok {
		return nil, nil, fmt.Errorf("storage %T cannot keep SCEP challenges", store)
	}
	return ca, scep.NewChallenges(c.staticChallenge, challenges, c.challengeTTL), nil
}

// scepRoot returns the PEM of the SCEP CA certificate, to trust for
// device identities, or nil without the embedded SCEP server.
func (c *enrollConfig) scepRoot() ([]byte, error) {
	if !c.embedded() {
		return nil, nil
	}
	b, err := os.ReadFile(c.caCert)
	if err != nil {
		return nil, fmt.Errorf("reading -scep-ca-cert: %w", err)
	}
	return b, nil
}

// mount adds /scep (and, with an API key, POST /v1/scep/challenge) and
// /mdm/enroll to mux as the flags ask. auth wraps API handlers.
func (c *enrollConfig) mount(mux *http.ServeMux, store storage.AllStorage, cfg *config, mtr *metrics.Metrics, auth func(http.Handler, ...string) http.Handler, logger log.Logger) error {
	ca, challenges, err := c.loadSCEP(store)
	if err != nil {
		return err
	}
	if ca != nil {
		mux.Handle("/scep", scep.Handler(ca, challenges,
			scep.WithLogger(logger.With("handler", "scep")),
			scep.WithObserver(mtr.SCEPObserver())))
		if auth != nil {
			mux.Handle("/v1/scep/challenge", auth(scep.ChallengeHandler(challenges, logger.With("handler", "scep-challenge")), http.MethodPost))
		}
	}
	if !c.enroll {
		return nil
	}
	base := strings.TrimSuffix(c.publicURL, "/")
	pc := enroll.Config{
		ServerURL:   base + "/mdm",
		Topic:       c.topic,
		SignMessage: cfg.certHeader == "",
	}
	if cfg.checkin {
		pc.CheckInURL = base + "/checkin"
	}
	var opts []enroll.Option
	switch {
	case c.acmeURL != "":
		pc.ACME = &enroll.ACME{DirectoryURL: c.acmeURL, HardwareBound: c.acmeHardware, Attest: c.acmeAttest}
	default:
		pc.SCEP = &enroll.SCEP{URL: c.scepURL, Challenge: c.scepChallenge}
		if pc.SCEP.URL == "" {
			pc.SCEP.URL = base + "/scep"
		}
		if challenges != nil {
			opts = append(opts, enroll.WithChallenges(challenges))
		}
	}
	if c.rootCA != "" {
		b, err := os.ReadFile(c.rootCA)
		if err != nil {
			return fmt.Errorf("reading -enroll-root-ca: %w", err)
		}
		certs, err := cryptoutil.ParseCertificatesPEM(b)
		if err != nil {
			return fmt.Errorf("-enroll-root-ca: %w", err)
		}
		pc.RootCA = certs[0]
	}
	if c.signCert != "" {
		cert, chain, key, err := readSigner(c.signCert, c.signKey)
		if err != nil {
			return err
		}
		opts = append(opts, enroll.WithSigner(cert, key, chain))
	}
	if c.token != "" {
		opts = append(opts, enroll.WithToken(c.token))
	}
	opts = append(opts, enroll.WithTopics(store))
	opts = append(opts, enroll.WithLogger(logger.With("handler", "enroll")))
	h, err := enroll.Handler(pc, opts...)
	if err != nil {
		return fmt.Errorf("enrollment profile: %w", err)
	}
	mux.Handle("/mdm/enroll", mdmhttp.MethodsMiddleware(h, http.MethodGet))
	return nil
}

// readSigner reads the profile-signing certificate (with any chain after
// it) and its key, which must match.
func readSigner(certPath, keyPath string) (*x509.Certificate, []*x509.Certificate, crypto.PrivateKey, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("reading -enroll-sign-cert: %w", err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("reading -enroll-sign-key: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("-enroll-sign-cert and -enroll-sign-key: %w", err)
	}
	certs, err := cryptoutil.ParseCertificatesPEM(certPEM)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("-enroll-sign-cert: %w", err)
	}
	return certs[0], certs[1:], pair.PrivateKey, nil
}
