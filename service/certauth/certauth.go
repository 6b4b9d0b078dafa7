// Package certauth binds device identity certificates to enrollments. It
// sits in front of the core service: an Authenticate associates the
// certificate's hash with the device, and every later request must come
// with an associated certificate, so one device cannot speak for another.
package certauth

import (
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

// associateNew handles an Authenticate: a certificate already bound to
// this device passes, one bound to another device is refused, a new one
// is bound (a renewed identity arrives this way).
func (c *CertAuth) associateNew(r *mdm.Request) error {
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
	used, err := c.store.HasCertHash(r, hash)
	if err != nil {
		return fmt.Errorf("checking certificate use: %w", err)
	}
	if used {
		return c.refuse(r, hash, ErrCertReused)
	}
	if err := c.store.AssociateCertHash(r, hash, r.Certificate.NotAfter); err != nil {
		return fmt.Errorf("associating certificate: %w", err)
	}
	log.From(r.Context, c.logger).Info("msg", "certificate associated", "hash", hash)
	return nil
}

// validate handles every other request: the certificate must be bound to
// the device, or (with retroactive association) the device must have no
// binding at all and the certificate none elsewhere.
func (c *CertAuth) validate(r *mdm.Request) error {
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
	if !c.retro {
		return c.refuse(r, hash, ErrNotAssociated)
	}
	has, err := c.store.EnrollmentHasCertHash(r, hash)
	if err != nil {
		return fmt.Errorf("checking enrollment association: %w", err)
	}
	if has {
		return c.refuse(r, hash, ErrNotAssociated)
	}
	used, err := c.store.HasCertHash(r, hash)
	if err != nil {
		return fmt.Errorf("checking certificate use: %w", err)
	}
	if used {
		return c.refuse(r, hash, ErrCertReused)
	}
	if err := c.store.AssociateCertHash(r, hash, r.Certificate.NotAfter); err != nil {
		return fmt.Errorf("associating certificate: %w", err)
	}
	log.From(r.Context, c.logger).Info("msg", "certificate associated retroactively", "hash", hash)
	return nil
}

func (c *CertAuth) refuse(r *mdm.Request, hash string, err error) error {
	log.From(r.Context, c.logger).Info("msg", "certificate refused", "hash", hash, "err", err)
	return err
}

// Authenticate implements service.Checkin.
func (c *CertAuth) Authenticate(r *mdm.Request, m *mdm.Authenticate) error {
	if err := c.associateNew(r); err != nil {
		return err
	}
	return c.next.Authenticate(r, m)
}

// TokenUpdate implements service.Checkin.
func (c *CertAuth) TokenUpdate(r *mdm.Request, m *mdm.TokenUpdate) error {
	if err := c.validate(r); err != nil {
		return err
	}
	return c.next.TokenUpdate(r, m)
}

// CheckOut implements service.Checkin.
func (c *CertAuth) CheckOut(r *mdm.Request, m *mdm.CheckOut) error {
	if err := c.validate(r); err != nil {
		return err
	}
	return c.next.CheckOut(r, m)
}

// UserAuthenticate implements service.Checkin.
func (c *CertAuth) UserAuthenticate(r *mdm.Request, m *mdm.UserAuthenticate) ([]byte, error) {
	if err := c.validate(r); err != nil {
		return nil, err
	}
	return c.next.UserAuthenticate(r, m)
}

// SetBootstrapToken implements service.Checkin.
func (c *CertAuth) SetBootstrapToken(r *mdm.Request, m *mdm.SetBootstrapToken) error {
	if err := c.validate(r); err != nil {
		return err
	}
	return c.next.SetBootstrapToken(r, m)
}

// GetBootstrapToken implements service.Checkin.
func (c *CertAuth) GetBootstrapToken(r *mdm.Request, m *mdm.GetBootstrapToken) (*mdm.BootstrapToken, error) {
	if err := c.validate(r); err != nil {
		return nil, err
	}
	return c.next.GetBootstrapToken(r, m)
}

// DeclarativeManagement implements service.Checkin.
func (c *CertAuth) DeclarativeManagement(r *mdm.Request, m *mdm.DeclarativeManagement) ([]byte, error) {
	if err := c.validate(r); err != nil {
		return nil, err
	}
	return c.next.DeclarativeManagement(r, m)
}

// GetToken implements service.Checkin.
func (c *CertAuth) GetToken(r *mdm.Request, m *mdm.GetToken) (*mdm.GetTokenResponse, error) {
	if err := c.validate(r); err != nil {
		return nil, err
	}
	return c.next.GetToken(r, m)
}

// CommandAndReportResults implements service.CommandAndReportResults.
func (c *CertAuth) CommandAndReportResults(r *mdm.Request, res *mdm.CommandResults) (*mdm.Command, error) {
	if err := c.validate(r); err != nil {
		return nil, err
	}
	return c.next.CommandAndReportResults(r, res)
}
