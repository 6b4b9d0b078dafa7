// Package allmulti combines several storage backends into one, for running
// a new backend beside the current one: every write goes to all of them in
// order, every read goes to the first only, and the answer (result and
// error) is always the first backend's. The other backends' errors are
// logged, never returned, so they cannot change what a device or operator
// sees.
package allmulti

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"github.com/nanomdm/nanomdm/log"
	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/storage"
)

// Storage is a storage.AllStorage over several backends.
type Storage struct {
	stores []storage.AllStorage
	logger log.Logger
}

// Option configures a Storage.
type Option func(*Storage)

// WithLogger sets the logger that receives the other backends' errors.
func WithLogger(l log.Logger) Option {
	return func(s *Storage) {
		if l != nil {
			s.logger = l
		}
	}
}

// New returns a Storage over stores; the first one answers.
func New(stores []storage.AllStorage, opts ...Option) (*Storage, error) {
	if len(stores) == 0 {
		return nil, errors.New("allmulti: no storage backends")
	}
	s := &Storage{stores: append([]storage.AllStorage(nil), stores...), logger: log.Nop}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

var _ storage.AllStorage = (*Storage)(nil)

func requestContext(r *mdm.Request) context.Context {
	if r != nil && r.Context != nil {
		return r.Context
	}
	return context.Background()
}

// others runs call on every backend but the first, logging failures.
func (s *Storage) others(ctx context.Context, method string, call func(storage.AllStorage) error) {
	for i, o := range s.stores[1:] {
		if err := call(o); err != nil {
			log.From(ctx, s.logger).Info("msg", "secondary storage failed", "method", method, "storage_index", i+1, "err", err)
		}
	}
}

// all runs call on every backend and returns the first backend's error.
func (s *Storage) all(ctx context.Context, method string, call func(storage.AllStorage) error) error {
	err := call(s.stores[0])
	s.others(ctx, method, call)
	return err
}

// StoreAuthenticate implements storage.CheckinStore.
func (s *Storage) StoreAuthenticate(r *mdm.Request, msg *mdm.Authenticate) error {
	return s.all(requestContext(r), "StoreAuthenticate", func(o storage.AllStorage) error {
		return o.StoreAuthenticate(r, msg)
	})
}

// StoreTokenUpdate implements storage.CheckinStore.
func (s *Storage) StoreTokenUpdate(r *mdm.Request, msg *mdm.TokenUpdate) error {
	return s.all(requestContext(r), "StoreTokenUpdate", func(o storage.AllStorage) error {
		return o.StoreTokenUpdate(r, msg)
	})
}

// StoreUserAuthenticate implements storage.CheckinStore.
func (s *Storage) StoreUserAuthenticate(r *mdm.Request, msg *mdm.UserAuthenticate) error {
	return s.all(requestContext(r), "StoreUserAuthenticate", func(o storage.AllStorage) error {
		return o.StoreUserAuthenticate(r, msg)
	})
}

// Disable implements storage.CheckinStore.
func (s *Storage) Disable(r *mdm.Request) error {
	return s.all(requestContext(r), "Disable", func(o storage.AllStorage) error {
		return o.Disable(r)
	})
}

// StoreCommandReport implements storage.CommandQueueStore.
func (s *Storage) StoreCommandReport(r *mdm.Request, report *mdm.CommandResults) error {
	return s.all(requestContext(r), "StoreCommandReport", func(o storage.AllStorage) error {
		return o.StoreCommandReport(r, report)
	})
}

// RetrieveNextCommand implements storage.CommandQueueStore (first backend).
func (s *Storage) RetrieveNextCommand(r *mdm.Request, skipNotNow bool) (*mdm.Command, error) {
	return s.stores[0].RetrieveNextCommand(r, skipNotNow)
}

// ClearQueue implements storage.CommandQueueStore.
func (s *Storage) ClearQueue(r *mdm.Request) error {
	return s.all(requestContext(r), "ClearQueue", func(o storage.AllStorage) error {
		return o.ClearQueue(r)
	})
}

// EnqueueCommand implements storage.CommandEnqueuer. The per-ID errors
// are the first backend's; IDs that fail on another backend but not on
// the first are logged as a count with one example.
func (s *Storage) EnqueueCommand(ctx context.Context, ids []string, cmd *mdm.Command) (map[string]error, error) {
	idErrs, err := s.stores[0].EnqueueCommand(ctx, ids, cmd)
	s.others(ctx, "EnqueueCommand", func(o storage.AllStorage) error {
		errs, err := o.EnqueueCommand(ctx, ids, cmd)
		if err != nil {
			return err
		}
		var extra []string
		for id, e := range errs {
			if e != nil && idErrs[id] == nil {
				extra = append(extra, id)
			}
		}
		if len(extra) > 0 {
			return fmt.Errorf("%d IDs failed only here, such as %q: %w", len(extra), extra[0], errs[extra[0]])
		}
		return nil
	})
	return idErrs, err
}

// StoreBootstrapToken implements storage.BootstrapTokenStore.
func (s *Storage) StoreBootstrapToken(r *mdm.Request, msg *mdm.SetBootstrapToken) error {
	return s.all(requestContext(r), "StoreBootstrapToken", func(o storage.AllStorage) error {
		return o.StoreBootstrapToken(r, msg)
	})
}

// RetrieveBootstrapToken implements storage.BootstrapTokenStore (first
// backend).
func (s *Storage) RetrieveBootstrapToken(r *mdm.Request, msg *mdm.GetBootstrapToken) (*mdm.BootstrapToken, error) {
	return s.stores[0].RetrieveBootstrapToken(r, msg)
}

// RetrieveTokenUpdateTally implements storage.TokenUpdateTallyStore
// (first backend).
func (s *Storage) RetrieveTokenUpdateTally(ctx context.Context, id string) (int, error) {
	return s.stores[0].RetrieveTokenUpdateTally(ctx, id)
}

// RetrievePushInfo implements storage.PushStore (first backend).
func (s *Storage) RetrievePushInfo(ctx context.Context, ids []string) (map[string]*mdm.Push, error) {
	return s.stores[0].RetrievePushInfo(ctx, ids)
}

// StorePushCert implements storage.PushCertStore.
func (s *Storage) StorePushCert(ctx context.Context, pemCert, pemKey []byte) error {
	return s.all(ctx, "StorePushCert", func(o storage.AllStorage) error {
		return o.StorePushCert(ctx, pemCert, pemKey)
	})
}

// RetrievePushCert implements storage.PushCertStore (first backend).
func (s *Storage) RetrievePushCert(ctx context.Context, topic string) (*tls.Certificate, string, error) {
	return s.stores[0].RetrievePushCert(ctx, topic)
}

// IsPushCertStale implements storage.PushCertStore (first backend).
func (s *Storage) IsPushCertStale(ctx context.Context, topic, staleToken string) (bool, error) {
	return s.stores[0].IsPushCertStale(ctx, topic, staleToken)
}

// HasCertHash implements storage.CertAuthStore (first backend).
func (s *Storage) HasCertHash(r *mdm.Request, hash string) (bool, error) {
	return s.stores[0].HasCertHash(r, hash)
}

// EnrollmentHasCertHash implements storage.CertAuthStore (first backend).
func (s *Storage) EnrollmentHasCertHash(r *mdm.Request, hash string) (bool, error) {
	return s.stores[0].EnrollmentHasCertHash(r, hash)
}

// IsCertHashAssociated implements storage.CertAuthStore (first backend).
func (s *Storage) IsCertHashAssociated(r *mdm.Request, hash string) (bool, error) {
	return s.stores[0].IsCertHashAssociated(r, hash)
}

// AssociateCertHash implements storage.CertAuthStore. The first backend
// decides: a hash it refuses is not written to the others.
func (s *Storage) AssociateCertHash(r *mdm.Request, hash string, certNotAfter time.Time) error {
	call := func(o storage.AllStorage) error { return o.AssociateCertHash(r, hash, certNotAfter) }
	if err := call(s.stores[0]); err != nil {
		return err
	}
	s.others(requestContext(r), "AssociateCertHash", call)
	return nil
}

// RetrieveMigrationCheckins implements storage.MigrationStore (first
// backend only).
func (s *Storage) RetrieveMigrationCheckins(ctx context.Context, c chan<- any) error {
	return s.stores[0].RetrieveMigrationCheckins(ctx, c)
}
