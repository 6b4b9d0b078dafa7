// Package certauth binds device identity certificates to enrollments. It
// sits in front of the core service: an Authenticate associates the
// certificate's hash with the device, and every later request must come
// with an associated certificate, so one device cannot speak for another.
package certauth

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/nanomdm/nanomdm/cryptoutil"
	"github.com/nanomdm/nanomdm/log"
	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/service"
	"github.com/nanomdm/nanomdm/storage"
)

var (
	// ErrNoCertificate means a request reached certauth without a device
	// certificate.
	ErrNoCertificate = errors.New("no device certificate")

	// ErrCertReused means a certificate already bound to one enrollment
	// was presented for another.
	ErrCertReused = errors.New("certificate is associated with another enrollment")

	// ErrNotAssociated means the certificate is not bound to the enrollment.
	ErrNotAssociated = errors.New("certificate is not associated with enrollment")
)

// CertAuth checks certificate associations before passing requests on.
type CertAuth struct {
	next   service.CheckinAndCommandService
	store  storage.CertAuthStore
	logger log.Logger
	retro  bool
}

// Option configures CertAuth.
type Option func(*CertAuth)

// WithLogger sets the logger.
func WithLogger(l log.Logger) Option { return func(c *CertAuth) { c.logger = l } }

// WithAllowRetroactive lets an enrollment that has no association at all
// (one migrated from another server, say) be bound to the first
// certificate it presents, if that certificate is not bound elsewhere.
func WithAllowRetroactive() Option { return func(c *CertAuth) { c.retro = true } }

// New returns CertAuth in front of next.
func New(next service.CheckinAndCommandService, store storage.CertAuthStore, opts ...Option) *CertAuth {
	c := &CertAuth{next: next, store: store, logger: log.Nop}
	for _, o := range opts {
		o(c)
	}
	return c
}

// check authorizes r. A certificate already bound to the device passes.
// Otherwise, on an Authenticate (authenticate set) a certificate bound to
// no enrollment is bound to this one: a new enrollment or a renewed
// identity. On any other request it is refused, unless retroactive
// association is allowed and the enrollment has no certificate at all,
// in which case the same rule applies. A certificate bound to another
// enrollment is always refused.
func (c *CertAuth) check(r *mdm.Request, authenticate bool) error {
	if r.Certificate == nil {
		return ErrNoCertificate
	}
	hash := cryptoutil.CertHash(r.Certificate)
	ok, err := c.store.IsCertHashAssociated(r, hash)
	if err != nil {
		return fmt.Errorf("checking association: %w", err)
	}
	if ok {
		return nil
	}
	if !authenticate && !c.retro {
		return c.refuse(r, hash, ErrNotAssociated)
	}

	if !authenticate {
		has, err := c.store.EnrollmentHasCertHash(r, hash)
		if err != nil {
			return fmt.Errorf("checking enrollment association: %w", err)
		}
		if has {
			return c.refuse(r, hash, ErrNotAssociated)
		}
	}
	// The storage refuses, atomically for every server sharing it, a
	// hash bound to another enrollment.
	if err := c.store.AssociateCertHash(r, hash, r.Certificate.NotAfter); errors.Is(err, storage.ErrCertHashTaken) {
		return c.refuse(r, hash, ErrCertReused)
	} else if err != nil {
		return fmt.Errorf("associating certificate: %w", err)
	}
	msg := "certificate associated"
	if !authenticate {
		msg = "certificate associated retroactively"
	}
	log.From(r.Context, c.logger).Info("msg", msg, "hash", hash)
	return nil
}

// AdmitCert decides from the certificate alone, before the body of a
// request is read, whether the request could pass check (it implements
// the CertAdmitter of package http/mdm). Which enrollment the request is
// for is in the body, so only this much is decided here: a certificate
// bound to some enrollment is admitted (whether it is bound to this one
// is checked once the body is read); an unbound one is admitted only when
// the request could be an Authenticate (authenticate set), which may bind
// it, or when retroactive association is allowed. Anything else is
// refused with ErrNotAssociated, as check would refuse it after the body.
func (c *CertAuth) AdmitCert(ctx context.Context, cert *x509.Certificate, authenticate bool) error {
	if cert == nil {
		return ErrNoCertificate
	}
	if authenticate || c.retro {
		return nil
	}
	r := &mdm.Request{Context: ctx}
	hash := cryptoutil.CertHash(cert)
	used, err := c.store.HasCertHash(r, hash)
	if err != nil {
		return fmt.Errorf("checking certificate use: %w", err)
	}
	if !used {
		return c.refuse(r, hash, ErrNotAssociated)
	}
	return nil
}

func (c *CertAuth) refuse(r *mdm.Request, hash string, err error) error {
	log.From(r.Context, c.logger).Info("msg", "certificate refused", "hash", hash, "err", err)
	return err
}

// Checkin implements service.Checkin: an Authenticate may bind the
// certificate to its enrollment, every other message must come with the
// certificate bound to it.
func (c *CertAuth) Checkin(r *mdm.Request, msg any) ([]byte, error) {
	_, authenticate := msg.(*mdm.Authenticate)
	// Authenticate belongs to device channels; refuse it before binding
	// anything, or a refused message would leave an association behind.
	if authenticate && (r.EnrollID == nil || r.EnrollID.Type.IsUserChannel()) {
		return nil, fmt.Errorf("%w: Authenticate on a user channel", mdm.ErrInvalidEnrollment)
	}
	if err := c.check(r, authenticate); err != nil {
		return nil, err
	}
	return c.next.Checkin(r, msg)
}

// CommandAndReportResults implements service.CommandAndReportResults.
func (c *CertAuth) CommandAndReportResults(r *mdm.Request, res *mdm.CommandResults) (*mdm.Command, error) {
	if err := c.check(r, false); err != nil {
		return nil, err
	}
	return c.next.CommandAndReportResults(r, res)
}
