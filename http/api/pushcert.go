package api

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/nanomdm/nanomdm/cryptoutil"
	mdmhttp "github.com/nanomdm/nanomdm/http"
	"github.com/nanomdm/nanomdm/log"
	"github.com/nanomdm/nanomdm/storage"
)

// MaxPushCertBytes bounds a push certificate upload (an MDM push
// certificate and its key take a few KiB).
const MaxPushCertBytes = 1 << 20

// maxPEMBlocks bounds the PEM blocks of an upload that are looked at.
const maxPEMBlocks = 32

// ErrInvalidPushCert means a push certificate upload is unusable: no
// certificate or key, an encrypted key, a key that does not match, a
// topic that is not an MDM topic, an expired certificate.
var ErrInvalidPushCert = errors.New("invalid push certificate upload")

// errEncryptedKey is the complaint about a password-protected key.
var errEncryptedKey = errors.New("private key PEM appears to be encrypted")

// PushCertResponse is the answer of PUT and GET /v1/pushcert?topic=T.
type PushCertResponse struct {
	Topic    string    `json:"topic"`
	NotAfter time.Time `json:"not_after"` // RFC 3339, UTC
}

// PushCertsResponse is the answer of GET /v1/pushcert without a topic:
// every stored push certificate, in topic order.
type PushCertsResponse struct {
	PushCerts []PushCertResponse `json:"push_certs"`
}

// PushCertStore is what PushCertHandler needs: to store, read and list
// push certificates.
type PushCertStore interface {
	storage.PushCertStore
	storage.PushCertLister
}

// pushCert is a checked push certificate upload.
type pushCert struct {
	topic    string
	notAfter time.Time
	certPEM  []byte // the certificate matching the key
	keyPEM   []byte // the key, without PEM headers
}

// invalid wraps a complaint about an upload in ErrInvalidPushCert.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %w", ErrInvalidPushCert, fmt.Errorf(format, args...))
}

// splitGluedPEM puts a line break before every "-----BEGIN " that does
// not start a line, so PEM blocks concatenated without a newline (as
// `cat cert.pem key.pem` makes of a file without a final newline) decode.
func splitGluedPEM(data []byte) []byte {
	const begin = "-----BEGIN "
	if !bytes.Contains(data, []byte(begin)) {
		return data
	}
	var out bytes.Buffer
	out.Grow(len(data) + 16)
	for {
		i := bytes.Index(data, []byte(begin))
		if i < 0 {
			out.Write(data)
			return out.Bytes()
		}
		out.Write(data[:i])
		if i > 0 && data[i-1] != '\n' {
			out.WriteByte('\n')
		}
		out.WriteString(begin)
		data = data[i+len(begin):]
	}
}

// isEncryptedPEM reports whether a key block is password protected:
// PKCS #8 "ENCRYPTED PRIVATE KEY" or the legacy OpenSSL Proc-Type and
// DEK-Info headers.
func isEncryptedPEM(b *pem.Block) bool {
	if b.Type == "ENCRYPTED PRIVATE KEY" {
		return true
	}
	_, dek := b.Headers["DEK-Info"]
	return dek || strings.Contains(b.Headers["Proc-Type"], "ENCRYPTED")
}

// parsePrivateKey parses an unencrypted PKCS #8, PKCS #1 or SEC 1 key.
func parsePrivateKey(b *pem.Block) (crypto.Signer, error) {
	var key any
	var err error
	switch b.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(b.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	}
	if err != nil {
		return nil, err
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		return k, nil
	case *ecdsa.PrivateKey:
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("unsupported key type %T", key)
}

// parsePushCert checks a push certificate upload: PEM certificate(s) and
// one unencrypted PEM private key, in any order, glued or not. The key
// must match one certificate, whose subject UID is an MDM topic and which
// has not expired at now. Every complaint wraps ErrInvalidPushCert and
// none quotes the key.
func parsePushCert(body []byte, now time.Time) (*pushCert, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, invalid("empty body: want a PEM certificate and its PEM private key")
	}
	var certs []*x509.Certificate
	var keyBlock *pem.Block
	rest := splitGluedPEM(body)
	for n := 0; ; n++ {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if n == maxPEMBlocks {
			return nil, invalid("more than %d PEM blocks", maxPEMBlocks)
		}
		switch {
		case b.Type == "CERTIFICATE":
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, invalid("parsing certificate: %w", err)
			}
			certs = append(certs, c)
		case strings.HasSuffix(b.Type, "PRIVATE KEY"):
			if isEncryptedPEM(b) {
				return nil, invalid("%w: upload the key without a password (openssl pkey -in key.pem -out plain.pem)", errEncryptedKey)
			}
			if keyBlock != nil {
				return nil, invalid("more than one private key")
			}
			keyBlock = b
		}
	}
	switch {
	case len(certs) == 0 && keyBlock == nil:
		return nil, invalid("no PEM certificate or private key found")
	case len(certs) == 0:
		return nil, invalid("no PEM CERTIFICATE block found")
	case keyBlock == nil:
		return nil, invalid("no PEM private key block found")
	}
	key, err := parsePrivateKey(keyBlock)
	if err != nil {
		return nil, invalid("parsing private key (%s block): %w", keyBlock.Type, err)
	}
	var leaf *x509.Certificate
	for _, c := range certs {
		if pub, ok := c.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); ok && pub.Equal(key.Public()) {
			leaf = c
			break
		}
	}
	if leaf == nil {
		return nil, invalid("private key does not match the certificate")
	}
	topic, err := cryptoutil.TopicFromCert(leaf)
	if err != nil {
		return nil, invalid("reading topic: %w", err)
	}
	if !cryptoutil.ValidTopic(topic) {
		return nil, invalid("topic %q does not start with %s: not an MDM push certificate", topic, cryptoutil.TopicPrefix)
	}
	if now.After(leaf.NotAfter) {
		return nil, invalid("certificate for topic %q expired at %s", topic, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return &pushCert{
		topic:    topic,
		notAfter: leaf.NotAfter.UTC(),
		certPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}),
		keyPEM:   pem.EncodeToMemory(&pem.Block{Type: keyBlock.Type, Bytes: keyBlock.Bytes}),
	}, nil
}

// PushCertHandler stores APNs push certificates (PUT, body = PEM
// certificate and unencrypted PEM private key) and describes a stored one
// (GET ?topic=T). Both answer {"topic","not_after"}. GET without a topic
// lists every stored certificate ({"push_certs":[…]}). A bad upload is
// answered 400, an unknown topic 404, a storage failure 500, each with a
// JSON error. The private key is never logged nor answered.
func PushCertHandler(store PushCertStore, opts ...Option) http.Handler {
	o := newOptions(opts)
	limit := int64(MaxPushCertBytes)
	if o.bodyLimit > 0 && o.bodyLimit < limit {
		limit = o.bodyLimit
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		logger := log.From(r.Context(), o.logger)
		switch r.Method {
		case http.MethodGet:
			getPushCert(w, r, store, logger)
		case http.MethodPut:
			body, err := mdmhttp.ReadBody(w, r, limit)
			if err != nil {
				mdmhttp.WriteJSONError(w, mdmhttp.BodyStatus(err), fmt.Errorf("reading body: %w", err))
				return
			}
			pc, err := parsePushCert(body, time.Now())
			if err != nil {
				logger.Info("msg", "push cert upload refused", "err", err)
				mdmhttp.WriteJSONError(w, http.StatusBadRequest, err)
				return
			}
			if err := store.StorePushCert(r.Context(), pc.certPEM, pc.keyPEM); err != nil {
				err = fmt.Errorf("storing push cert for topic %q: %w", pc.topic, err)
				logger.Info("msg", "push cert upload", "topic", pc.topic, "err", err)
				mdmhttp.WriteJSONError(w, http.StatusInternalServerError, err)
				return
			}
			logger.Info("msg", "stored push cert", "topic", pc.topic, "not_after", pc.notAfter.Format(time.RFC3339))
			mdmhttp.WriteJSON(w, http.StatusOK, PushCertResponse{Topic: pc.topic, NotAfter: pc.notAfter})
		default:
			w.Header().Add("Allow", http.MethodGet)
			w.Header().Add("Allow", http.MethodPut)
			mdmhttp.WriteJSONError(w, http.StatusMethodNotAllowed, errors.New("method not allowed"))
		}
	})
}

// getPushCert answers the topic and expiry of the stored push certificate
// of the topic query parameter, or of every one without it.
func getPushCert(w http.ResponseWriter, r *http.Request, store PushCertStore, logger log.Logger) {
	topics := []string{r.URL.Query().Get("topic")}
	list := topics[0] == ""
	if list {
		var err error
		if topics, err = store.RetrievePushCertTopics(r.Context()); err != nil {
			logger.Info("msg", "push cert list", "err", err)
			mdmhttp.WriteJSONError(w, http.StatusInternalServerError, err)
			return
		}
	}
	resp := PushCertsResponse{PushCerts: []PushCertResponse{}}
	for _, topic := range topics {
		notAfter, err := pushCertExpiry(r.Context(), store, topic)
		switch {
		case errors.Is(err, storage.ErrNoPushCert) && list:
			continue // removed since it was listed
		case errors.Is(err, storage.ErrNoPushCert):
			mdmhttp.WriteJSONError(w, http.StatusNotFound, err)
			return
		case err != nil:
			logger.Info("msg", "push cert lookup", "err", err)
			mdmhttp.WriteJSONError(w, http.StatusInternalServerError, err)
			return
		}
		resp.PushCerts = append(resp.PushCerts, PushCertResponse{Topic: topic, NotAfter: notAfter})
	}
	if list {
		mdmhttp.WriteJSON(w, http.StatusOK, resp)
		return
	}
	mdmhttp.WriteJSON(w, http.StatusOK, resp.PushCerts[0])
}

// pushCertExpiry returns the NotAfter of the stored push certificate of
// topic, in UTC.
func pushCertExpiry(ctx context.Context, store storage.PushCertStore, topic string) (time.Time, error) {
	cert, _, err := store.RetrievePushCert(ctx, topic)
	switch {
	case errors.Is(err, storage.ErrNoPushCert):
		return time.Time{}, err
	case err != nil:
		return time.Time{}, fmt.Errorf("retrieving push cert for topic %q: %w", topic, err)
	case cert == nil || len(cert.Certificate) == 0:
		return time.Time{}, fmt.Errorf("stored push cert for topic %q has no certificate", topic)
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return time.Time{}, fmt.Errorf("parsing stored push cert for topic %q: %w", topic, err)
		}
	}
	return leaf.NotAfter.UTC(), nil
}
