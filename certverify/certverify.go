// Package certverify decides whether a device identity certificate may be
// used: it must chain to one of the operator's CA certificates, be within its
// validity period and allow client authentication.
package certverify

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
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
//
// A device presents the same identity certificate on every request, so
// the verifier remembers the certificates it has verified, with the time
// span in which the whole chain is valid, and answers for them again
// without building the chain (and checking its signatures) anew. The
// pools never change, so the remembered answer is the one a new check
// would give at any time within that span; outside it the certificate is
// checked again. Only successes are remembered.
type PoolVerifier struct {
	roots         *x509.CertPool
	intermediates *x509.CertPool
	now           func() time.Time

	cacheSize int
	mu        sync.RWMutex
	verified  map[[sha256.Size]byte]validity
}

// validity is the span in which every certificate of a verified chain is
// within its validity period.
type validity struct{ notBefore, notAfter time.Time }

// DefaultCacheSize is the number of verified certificates a PoolVerifier
// remembers unless WithCacheSize says otherwise: one per device of a
// large fleet, at about 100 bytes each.
const DefaultCacheSize = 100_000

// Option configures a PoolVerifier.
type Option func(*PoolVerifier)

// WithCacheSize sets how many verified certificates are remembered; 0 or
// less turns remembering off, so every call builds the chain.
func WithCacheSize(n int) Option {
	return func(v *PoolVerifier) { v.cacheSize = n }
}

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
		cacheSize:     DefaultCacheSize,
	}
	for _, opt := range opts {
		opt(v)
	}
	if v.cacheSize > 0 {
		v.verified = make(map[[sha256.Size]byte]validity)
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
	now := v.now()
	var key [sha256.Size]byte
	if v.verified != nil {
		key = sha256.Sum256(cert.Raw)
		v.mu.RLock()
		span, ok := v.verified[key]
		v.mu.RUnlock()
		if ok && !now.Before(span.notBefore) && !now.After(span.notAfter) {
			return nil
		}
	}
	chains, err := cert.Verify(x509.VerifyOptions{
		// Roots is never nil, so x509 never falls back to the system pool.
		Roots:         v.roots,
		Intermediates: v.intermediates,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err == nil {
		if v.verified != nil && len(chains) > 0 {
			v.remember(key, chains[0])
		}
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

// remember records that the certificate with hash key verified through
// chain. When the cache is full an arbitrary entry makes room.
func (v *PoolVerifier) remember(key [sha256.Size]byte, chain []*x509.Certificate) {
	span := validity{notBefore: chain[0].NotBefore, notAfter: chain[0].NotAfter}
	for _, c := range chain[1:] {
		if c.NotBefore.After(span.notBefore) {
			span.notBefore = c.NotBefore
		}
		if c.NotAfter.Before(span.notAfter) {
			span.notAfter = c.NotAfter
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, ok := v.verified[key]; !ok && len(v.verified) >= v.cacheSize {
		for k := range v.verified {
			delete(v.verified, k)
			break
		}
	}
	v.verified[key] = span
}
