// Package scep is the embedded SCEP server (RFC 8894): it answers
// GetCACert, GetCACaps and PKIOperation at /scep, and issues device
// identity certificates from the operator's CA to devices that bring a
// valid challenge (a static one, or a one-time one minted through the
// API and kept in storage) or renew a still-valid identity of the same
// CA. The PKCS#7 wire format is github.com/smallstep/scep's.
package scep

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/nanomdm/nanomdm/cryptoutil"
)

// DefaultCertDays is the validity of issued certificates unless
// WithCertDays says otherwise.
const DefaultCertDays = 365

// CA issues device identity certificates.
type CA struct {
	cert *x509.Certificate
	key  *rsa.PrivateKey
	days int
	now  func() time.Time
}

// CAOption configures a CA.
type CAOption func(*CA)

// WithCertDays sets how many days issued certificates are valid.
func WithCertDays(days int) CAOption { return func(c *CA) { c.days = days } }

// WithCAClock sets the source of the current time (default time.Now).
func WithCAClock(now func() time.Time) CAOption { return func(c *CA) { c.now = now } }

// ErrNotRSA means the CA key is not an RSA key: SCEP clients encrypt
// their requests to the CA certificate's key, which must be RSA.
var ErrNotRSA = errors.New("SCEP CA key must be RSA")

// NewCA returns a CA from a PEM certificate (the first of certPEM) and its
// PEM private key (RSA, PKCS#1 or PKCS#8), which must match.
func NewCA(certPEM, keyPEM []byte, opts ...CAOption) (*CA, error) {
	certs, err := cryptoutil.ParseCertificatesPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("reading CA certificate: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("reading CA certificate and key: %w", err)
	}
	rsaKey, ok := pair.PrivateKey.(*rsa.PrivateKey)
	if !ok {
		return nil, ErrNotRSA
	}
	if !certs[0].IsCA {
		return nil, errors.New("CA certificate is not a CA (basic constraints)")
	}
	ca := &CA{cert: certs[0], key: rsaKey, days: DefaultCertDays, now: time.Now}
	for _, opt := range opts {
		opt(ca)
	}
	if ca.days <= 0 {
		return nil, fmt.Errorf("certificate validity of %d days: want at least one", ca.days)
	}
	return ca, nil
}

// Certificate returns the CA certificate.
func (c *CA) Certificate() *x509.Certificate { return c.cert }

// serialLimit bounds serial numbers to 127 bits: random serials of that
// size never repeat in practice, across server instances too, and stay
// within the 20 octets RFC 5280 allows.
var serialLimit = new(big.Int).Lsh(big.NewInt(1), 127)

// Issue signs a client-authentication certificate for the key and subject
// of csr, valid from a few minutes ago (clock skew) for the CA's days.
func (c *CA) Issue(csr *x509.CertificateRequest) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, serialLimit)
	if err != nil {
		return nil, err
	}
	serial.Add(serial, big.NewInt(1)) // positive, never zero
	now := c.now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      csr.Subject,
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     now.AddDate(0, 0, c.days),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, csr.PublicKey, c.key)
	if err != nil {
		return nil, fmt.Errorf("signing certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}

// issuedByUs reports whether cert is a valid client identity of this CA
// now: the proof a renewal request brings instead of a challenge.
func (c *CA) issuedByUs(cert *x509.Certificate) bool {
	if cert == nil {
		return false
	}
	roots := x509.NewCertPool()
	roots.AddCert(c.cert)
	_, err := cert.Verify(x509.VerifyOptions{
		Roots:       roots,
		CurrentTime: c.now(),
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	return err == nil
}
