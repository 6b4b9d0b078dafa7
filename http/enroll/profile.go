// Package enroll serves the enrollment profile (GET /mdm/enroll): a
// configuration profile with an MDM payload, an identity payload (SCEP
// or ACME) and optionally the CA certificate, CMS-signed when a signing
// identity is configured. Installing it enrolls a device.
package enroll

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/subtle"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/groob/plist"
	"github.com/smallstep/pkcs7"

	"github.com/nanomdm/nanomdm/log"
)

// ContentType is the media type of configuration profiles.
const ContentType = "application/x-apple-aspen-config"

// AccessRights is the MDM payload's AccessRights: every right (1-4096
// added up), as enrollment profiles of MDM servers commonly grant.
const AccessRights = 8191

// ServerCapabilities are what the server tells devices it supports.
var ServerCapabilities = []string{"com.apple.mdm.per-user-connections", "com.apple.mdm.bootstraptoken"}

// SCEP describes the SCEP identity payload.
type SCEP struct {
	// URL is the SCEP endpoint devices reach.
	URL string
	// Challenge is the static challenge put in every profile; empty
	// takes one from the ChallengeSource (WithChallenges) per download.
	Challenge string
}

// ACME describes the ACME identity payload (hardware-bound keys), for an
// external ACME CA.
type ACME struct {
	// DirectoryURL is the ACME server's directory.
	DirectoryURL string
	// HardwareBound asks for a key in the Secure Enclave.
	HardwareBound bool
	// Attest asks the device to attest the key to the ACME server
	// (needs HardwareBound).
	Attest bool
}

// Config is what goes into a profile.
type Config struct {
	// ServerURL is the MDM endpoint, CheckInURL the check-in endpoint
	// when check-ins are split off (else empty).
	ServerURL  string
	CheckInURL string
	// Topic is the push topic; empty takes the one push certificate in
	// storage (WithTopics).
	Topic string
	// SignMessage makes devices sign requests (Mdm-Signature); false when
	// the TLS proxy passes the client certificate on.
	SignMessage bool
	// Identifier prefixes every PayloadIdentifier, e.g. com.example.mdm.
	Identifier string
	// Name is the profile's display name.
	Name string
	// SCEP or ACME is the identity payload; exactly one must be set.
	SCEP *SCEP
	ACME *ACME
	// RootCA, if set, is installed as a root certificate payload.
	RootCA *x509.Certificate
}

// ChallengeSource gives the SCEP challenge of one profile.
type ChallengeSource interface {
	ForProfile(ctx context.Context) (string, error)
}

// TopicLister lists the topics of the stored push certificates.
type TopicLister interface {
	RetrievePushCertTopics(ctx context.Context) ([]string, error)
}

// Option configures the handler.
type Option func(*handler)

// WithChallenges gives each profile a challenge from src (SCEP without a
// static challenge).
func WithChallenges(src ChallengeSource) Option { return func(h *handler) { h.challenges = src } }

// WithTopics finds the topic in storage when the Config has none.
func WithTopics(l TopicLister) Option { return func(h *handler) { h.topics = l } }

// WithToken requires ?token=token on every request (compared in constant
// time); others get 403.
func WithToken(token string) Option { return func(h *handler) { h.token = token } }

// WithSigner wraps every profile in a CMS signature by cert and key,
// with chain (intermediates) added to the signature.
func WithSigner(cert *x509.Certificate, key crypto.PrivateKey, chain []*x509.Certificate) Option {
	return func(h *handler) { h.signCert, h.signKey, h.signChain = cert, key, chain }
}

// WithLogger sets the logger (default: none).
func WithLogger(l log.Logger) Option { return func(h *handler) { h.logger = l } }

type handler struct {
	cfg        Config
	challenges ChallengeSource
	topics     TopicLister
	token      string
	signCert   *x509.Certificate
	signKey    crypto.PrivateKey
	signChain  []*x509.Certificate
	logger     log.Logger
}

// Handler serves the enrollment profile; the caller restricts methods
// (GET).
func Handler(cfg Config, opts ...Option) (http.Handler, error) {
	if (cfg.SCEP == nil) == (cfg.ACME == nil) {
		return nil, errors.New("enrollment profile needs exactly one identity payload: SCEP or ACME")
	}
	if cfg.Identifier == "" {
		cfg.Identifier = IdentifierFor(cfg.ServerURL)
	}
	if cfg.Name == "" {
		cfg.Name = "MDM enrollment"
	}
	h := &handler{cfg: cfg, logger: log.Nop}
	for _, opt := range opts {
		opt(h)
	}
	if cfg.SCEP != nil && cfg.SCEP.Challenge == "" && h.challenges == nil {
		return nil, errors.New("SCEP payload without a challenge and no challenge source")
	}
	if cfg.Topic == "" && h.topics == nil {
		return nil, errors.New("no push topic and no push certificate storage to find it in")
	}
	return h, nil
}

// IdentifierFor returns the reverse-DNS form of the host of serverURL
// ("https://mdm.example.com/mdm" → "com.example.mdm"), the stable prefix
// of the payload identifiers: a device replaces an installed profile
// that has the same identifier.
func IdentifierFor(serverURL string) string {
	u, err := url.Parse(serverURL)
	if err != nil || u.Hostname() == "" {
		return "nanomdm.enroll"
	}
	parts := strings.Split(u.Hostname(), ".")
	slices.Reverse(parts)
	return strings.Join(parts, ".")
}

// ErrNoTopic means the topic could not be decided: no push certificate
// is stored, or several are.
var ErrNoTopic = errors.New("no single push certificate to take the topic from: upload one or set the topic")

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.token != "" && subtle.ConstantTimeCompare([]byte(r.URL.Query().Get("token")), []byte(h.token)) != 1 {
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	logger := log.From(r.Context(), h.logger)
	body, err := h.profile(r.Context())
	if errors.Is(err, ErrNoTopic) {
		logger.Info("msg", "building enrollment profile", "err", err)
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	} else if err != nil {
		logger.Info("msg", "building enrollment profile", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", ContentType)
	w.Header().Set("Content-Disposition", `attachment; filename="enroll.mobileconfig"`)
	w.Header().Set("Cache-Control", "no-store")
	w.Write(body)
}

func (h *handler) topic(ctx context.Context) (string, error) {
	if h.cfg.Topic != "" {
		return h.cfg.Topic, nil
	}
	topics, err := h.topics.RetrievePushCertTopics(ctx)
	if err != nil {
		return "", fmt.Errorf("listing push topics: %w", err)
	}
	if len(topics) != 1 {
		return "", fmt.Errorf("%w (%d stored)", ErrNoTopic, len(topics))
	}
	return topics[0], nil
}

// profile builds one profile, signed when a signer is set.
func (h *handler) profile(ctx context.Context) ([]byte, error) {
	topic, err := h.topic(ctx)
	if err != nil {
		return nil, err
	}
	id := h.cfg.Identifier
	var identity any
	identityUUID := newUUID()
	switch {
	case h.cfg.SCEP != nil:
		challenge := h.cfg.SCEP.Challenge
		if challenge == "" {
			if challenge, err = h.challenges.ForProfile(ctx); err != nil {
				return nil, fmt.Errorf("getting SCEP challenge: %w", err)
			}
		}
		identity = scepPayload{
			payload: payload{
				PayloadType: "com.apple.security.scep", PayloadVersion: 1, PayloadUUID: identityUUID,
				PayloadIdentifier: id + ".enroll.identity", PayloadDisplayName: "MDM device identity",
				PayloadDescription: "Requests the device identity certificate from the SCEP server.",
			},
			PayloadContent: scepContent{
				URL: h.cfg.SCEP.URL, Challenge: challenge, KeyType: "RSA", Keysize: 2048, KeyUsage: 5,
				Subject: [][][]string{{{"CN", "MDM device identity"}}},
			},
		}
	default:
		a := h.cfg.ACME
		identity = acmePayload{
			payload: payload{
				PayloadType: "com.apple.security.acme", PayloadVersion: 1, PayloadUUID: identityUUID,
				PayloadIdentifier: id + ".enroll.identity", PayloadDisplayName: "MDM device identity",
				PayloadDescription: "Requests the device identity certificate from the ACME server.",
			},
			DirectoryURL: a.DirectoryURL, ClientIdentifier: newUUID(),
			KeyType: "ECSECPrimeRandom", KeySize: 384, HardwareBound: a.HardwareBound, Attest: a.Attest,
			Subject:          [][][]string{{{"CN", "MDM device identity"}}},
			ExtendedKeyUsage: []string{"1.3.6.1.5.5.7.3.2"},
		}
	}
	content := []any{identity, mdmPayload{
		payload: payload{
			PayloadType: "com.apple.mdm", PayloadVersion: 1, PayloadUUID: newUUID(),
			PayloadIdentifier: id + ".enroll.mdm", PayloadDisplayName: "MDM enrollment",
			PayloadDescription: "Enrolls the device in the MDM server.",
		},
		IdentityCertificateUUID: identityUUID,
		ServerURL:               h.cfg.ServerURL,
		CheckInURL:              h.cfg.CheckInURL,
		Topic:                   topic,
		SignMessage:             h.cfg.SignMessage,
		CheckOutWhenRemoved:     true,
		AccessRights:            AccessRights,
		ServerCapabilities:      ServerCapabilities,
	}}
	if h.cfg.RootCA != nil {
		content = append(content, certPayload{
			payload: payload{
				PayloadType: "com.apple.security.root", PayloadVersion: 1, PayloadUUID: newUUID(),
				PayloadIdentifier: id + ".enroll.ca", PayloadDisplayName: "MDM certificate authority",
				PayloadDescription: "Trusts the certificate authority of the MDM server.",
			},
			PayloadCertificateFileName: "ca.cer",
			PayloadContent:             h.cfg.RootCA.Raw,
		})
	}
	top := &topPayload{
		payload: payload{
			PayloadType: "Configuration", PayloadVersion: 1, PayloadUUID: newUUID(),
			PayloadIdentifier: id + ".enroll", PayloadDisplayName: h.cfg.Name,
			PayloadDescription: "Lets this MDM server manage the device.",
		},
		PayloadScope:   "System",
		PayloadContent: content,
	}
	body, err := plist.MarshalIndent(top, "\t")
	if err != nil {
		return nil, fmt.Errorf("encoding profile: %w", err)
	}
	if h.signCert == nil {
		return body, nil
	}
	return h.sign(body)
}

func (h *handler) sign(body []byte) ([]byte, error) {
	sd, err := pkcs7.NewSignedData(body)
	if err != nil {
		return nil, fmt.Errorf("signing profile: %w", err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if err := sd.AddSignerChain(h.signCert, h.signKey, h.signChain, pkcs7.SignerInfoConfig{}); err != nil {
		return nil, fmt.Errorf("signing profile: %w", err)
	}
	signed, err := sd.Finish()
	if err != nil {
		return nil, fmt.Errorf("signing profile: %w", err)
	}
	return signed, nil
}

// newUUID returns a random (version 4) UUID in upper case, as Apple's
// tools write PayloadUUIDs.
func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return strings.ToUpper(fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]))
}
