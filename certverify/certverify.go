// Package certverify decides whether a device identity certificate may be
// used: it must chain to one of the operator's CA certificates, be within its
// validity period and allow client authentication.
package certverify

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/nanomdm/nanomdm/cryptoutil"
)

var (
	// ErrNoCertificate is returned by Verify for a nil certificate. It is
	// the same value as cryptoutil.ErrNoCertificate, so one errors.Is check
	// covers a request without a certificate wherever that is noticed.
	ErrNoCertificate = cryptoutil.ErrNoCertificate

	// ErrUntrusted means no chain could be built from the certificate to a
	// configured root through the configured intermediates.
	ErrUntrusted = errors.New("certificate not issued by a trusted authority")

	// ErrExpired means the certificate, or a certificate in its chain, is
	// expired or not yet valid.
	ErrExpired = errors.New("certificate outside its validity period")

	// ErrUsage means the certificate's extended key usage, or that of a CA
	// in its chain, does not allow client authentication.
	ErrUsage = errors.New("certificate not valid for client authentication")
)

// PoolVerifier verifies certificates against fixed pools of root and
// intermediate CA certificates. It is safe for concurrent use.
type PoolVerifier struct {
	roots         *x509.CertPool
	intermediates *x509.CertPool
	now           func() time.Time
}

// Option configures a PoolVerifier.
type Option func(*PoolVerifier)

// WithClock sets the source of the current time used for validity checks.
// The default, also used when now is nil, is time.Now.
func WithClock(now func() time.Time) Option {
	return func(v *PoolVerifier) {
		if now != nil {
			v.now = now
		}
	}
}

// NewPoolVerifier returns a verifier trusting the certificates in rootsPEM,
// which must hold at least one (otherwise the error wraps
// cryptoutil.ErrNoCertificates). intermediatesPEM may be empty; if it is not,
// it must hold at least one certificate. Intermediates are only used to build
// chains, never trusted on their own. The system trust store is never
// consulted.
func NewPoolVerifier(rootsPEM []byte, intermediatesPEM []byte, opts ...Option) (*PoolVerifier, error) {
	roots, err := poolFromPEM(rootsPEM)
	if err != nil {
		return nil, fmt.Errorf("reading root certificates: %w", err)
	}
	intermediates := x509.NewCertPool()
	if len(bytes.TrimSpace(intermediatesPEM)) > 0 {
		intermediates, err = poolFromPEM(intermediatesPEM)
		if err != nil {
			return nil, fmt.Errorf("reading intermediate certificates: %w", err)
		}
	}
	v := &PoolVerifier{
		roots:         roots,
		intermediates: intermediates,
		now:           time.Now,
	}
	for _, opt := range opts {
		opt(v)
	}
	return v, nil
}

func poolFromPEM(data []byte) (*x509.CertPool, error) {
	certs, err := cryptoutil.ParseCertificatesPEM(data)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// Verify checks that cert chains to a root, is within its validity period at
// the verifier's current time and allows client authentication.
//
// Extended key usage follows crypto/x509 and RFC 5280: a certificate without
// the extension is unrestricted and accepted, as is one listing "any"; one
// that lists usages must include clientAuth (SCEP-issued device identities
// normally do). A CA in the chain that lists usages restricts its
// descendants the same way. The key usage bits are not checked.
//
// Errors wrap ErrNoCertificate, ErrUntrusted, ErrExpired or ErrUsage, and
// the crypto/x509 error that says which certificate failed and why.
func (v *PoolVerifier) Verify(cert *x509.Certificate) error {
	if cert == nil {
		return ErrNoCertificate
	}
	_, err := cert.Verify(x509.VerifyOptions{
		// Roots is never nil, so x509 never falls back to the system pool.
		Roots:         v.roots,
		Intermediates: v.intermediates,
		CurrentTime:   v.now(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err == nil {
		return nil
	}
	var invalid x509.CertificateInvalidError
	if errors.As(err, &invalid) {
		switch invalid.Reason {
		case x509.Expired:
			return fmt.Errorf("%w: %w", ErrExpired, err)
		case x509.IncompatibleUsage:
			return fmt.Errorf("%w: %w", ErrUsage, err)
		}
	}
	// Unknown authority, and every other reason a chain is refused (a CA
	// without the CA flag, name constraints, path length...).
	return fmt.Errorf("%w: %w", ErrUntrusted, err)
}
