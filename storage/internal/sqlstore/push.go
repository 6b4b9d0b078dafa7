package sqlstore

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	"github.com/nanomdm/nanomdm/cryptoutil"
	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/storage"
)

// RetrievePushInfo implements storage.PushStore.
func (s *Store) RetrievePushInfo(ctx context.Context, ids []string) (map[string]*mdm.Push, error) {
	valid, _ := validIDs(ids)
	out := make(map[string]*mdm.Push, len(valid))
	for _, batch := range batches(valid, s.batchSize(1)) {
		if err := s.pushInfo(ctx, batch, out); err != nil {
			return nil, fmt.Errorf("retrieving push info: %w", err)
		}
	}
	return out, nil
}

func (s *Store) pushInfo(ctx context.Context, ids []string, out map[string]*mdm.Push) error {
	rows, err := s.query(ctx, s.db, s.d.Queries.SelectPushInfo, Args{"ids": ids})
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id, topic, magic, tokenHex string
		if err := rows.Scan(&id, &topic, &magic, &tokenHex); err != nil {
			return err
		}
		token, err := hex.DecodeString(tokenHex)
		if err != nil {
			return fmt.Errorf("push token of %s: %w", id, err)
		}
		if len(token) == 0 {
			continue
		}
		out[id] = &mdm.Push{Topic: topic, PushMagic: magic, Token: token}
	}
	return rows.Err()
}

// pushCertToken is the stale token of a certificate and key: it changes
// exactly when either changes.
func pushCertToken(pemCert, pemKey []byte) string {
	h := sha256.New()
	fmt.Fprintf(h, "%d:", len(pemCert))
	h.Write(pemCert)
	h.Write(pemKey)
	return hex.EncodeToString(h.Sum(nil))
}

// StorePushCert implements storage.PushCertStore. Storing a certificate
// for a topic that has one replaces it (and changes its stale token).
func (s *Store) StorePushCert(ctx context.Context, pemCert, pemKey []byte) error {
	_, topic, err := cryptoutil.PushKeyPair(pemCert, pemKey)
	if err != nil {
		return err
	}
	_, err = s.execRetry(ctx, "push cert", s.d.Queries.UpsertPushCert, Args{
		"topic":       topic,
		"cert":        string(pemCert),
		"key":         string(pemKey),
		"stale_token": pushCertToken(pemCert, pemKey),
	})
	if err != nil {
		return fmt.Errorf("storing push cert for topic %q: %w", topic, err)
	}
	return nil
}

// RetrievePushCert implements storage.PushCertStore.
func (s *Store) RetrievePushCert(ctx context.Context, topic string) (*tls.Certificate, string, error) {
	var certPEM, keyPEM, token string
	found, err := s.scanOne(ctx, s.db, s.d.Queries.SelectPushCert, Args{"topic": topic}, &certPEM, &keyPEM, &token)
	switch {
	case err != nil:
		return nil, "", fmt.Errorf("retrieving push cert for topic %q: %w", topic, err)
	case !found:
		return nil, "", fmt.Errorf("%w: %q", storage.ErrNoPushCert, topic)
	}
	pair, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		return nil, "", fmt.Errorf("parsing stored push cert for topic %q: %w", topic, err)
	}
	return &pair, token, nil
}

// IsPushCertStale implements storage.PushCertStore.
func (s *Store) IsPushCertStale(ctx context.Context, topic, staleToken string) (bool, error) {
	var token string
	found, err := s.scanOne(ctx, s.db, s.d.Queries.SelectPushCertStaleToken, Args{"topic": topic}, &token)
	switch {
	case err != nil:
		return false, fmt.Errorf("retrieving push cert stale token for topic %q: %w", topic, err)
	case !found:
		return false, fmt.Errorf("%w: %q", storage.ErrNoPushCert, topic)
	}
	return token != staleToken, nil
}

// RetrievePushCertTopics implements storage.PushCertLister. Topics are
// sorted here: the database's collation need not be bytewise.
func (s *Store) RetrievePushCertTopics(ctx context.Context) ([]string, error) {
	rows, err := s.query(ctx, s.db, s.d.Queries.SelectPushCertTopics, nil)
	if err != nil {
		return nil, fmt.Errorf("listing push cert topics: %w", err)
	}
	defer rows.Close()
	var topics []string
	for rows.Next() {
		var topic string
		if err := rows.Scan(&topic); err != nil {
			return nil, fmt.Errorf("listing push cert topics: %w", err)
		}
		topics = append(topics, topic)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing push cert topics: %w", err)
	}
	slices.Sort(topics)
	return topics, nil
}

// HasCertHash implements storage.CertAuthStore.
// r needs no enrollment: only its context is used.
func (s *Store) HasCertHash(r *mdm.Request, hash string) (bool, error) {
	ctx := context.Background()
	if r != nil && r.Context != nil {
		ctx = r.Context
	}
	return s.exists(ctx, s.d.Queries.HasCertHash, Args{"sha256": hash})
}

// EnrollmentHasCertHash implements storage.CertAuthStore.
func (s *Store) EnrollmentHasCertHash(r *mdm.Request, _ string) (bool, error) {
	ctx, _, deviceID, err := requestIDs(r)
	if err != nil {
		return false, err
	}
	return s.exists(ctx, s.d.Queries.EnrollmentHasCertHash, Args{"id": deviceID})
}

// IsCertHashAssociated implements storage.CertAuthStore.
func (s *Store) IsCertHashAssociated(r *mdm.Request, hash string) (bool, error) {
	ctx, _, deviceID, err := requestIDs(r)
	if err != nil {
		return false, err
	}
	return s.exists(ctx, s.d.Queries.IsCertHashAssociated, Args{"id": deviceID, "sha256": hash})
}

func (s *Store) exists(ctx context.Context, q string, args Args) (bool, error) {
	var one int
	found, err := s.scanOne(ctx, s.db, q, args, &one)
	if err != nil {
		return false, fmt.Errorf("looking up certificate hash: %w", err)
	}
	return found, nil
}

// AssociateCertHash implements storage.CertAuthStore. The look for
// another owner and the insert run on one connection holding a database
// lock on the hash, so servers sharing the database never bind one hash
// to two enrollments.
func (s *Store) AssociateCertHash(r *mdm.Request, hash string, certNotAfter time.Time) error {
	ctx, _, deviceID, err := requestIDs(r)
	if err != nil {
		return err
	}
	var notAfter any
	if !certNotAfter.IsZero() {
		notAfter = certNotAfter.UTC()
	}
	args := Args{"id": deviceID, "sha256": hash, "not_after": notAfter}
	err = s.withCertHashLock(ctx, hash, func(q querier) error {
		var one int
		taken, err := s.scanOne(ctx, q, s.d.Queries.CertHashTaken, args, &one)
		if err != nil {
			return err
		}
		if taken {
			return fmt.Errorf("%w: %s", storage.ErrCertHashTaken, hash)
		}
		_, err = s.exec(ctx, q, s.d.Queries.AssociateCertHash, args)
		return err
	})
	if err != nil {
		return fmt.Errorf("associating certificate hash with %s: %w", deviceID, err)
	}
	return nil
}

// withCertHashLock runs fn while holding the lock on hash: in a
// transaction holding a transaction lock when the dialect has no
// UnlockCertHash (which also works through a pooler in transaction
// mode), else on one connection holding a session lock. A connection
// whose unlock fails is closed rather than pooled, which releases the
// lock.
func (s *Store) withCertHashLock(ctx context.Context, hash string, fn func(querier) error) error {
	lock := func(q querier) error {
		var locked int
		if _, err := s.scanOne(ctx, q, s.d.Queries.LockCertHash, Args{"sha256": hash}, &locked); err != nil || locked != 1 {
			return fmt.Errorf("locking certificate hash (result %d): %w", locked, err)
		}
		return nil
	}
	if s.d.Queries.UnlockCertHash == "" {
		return s.inTx(ctx, "associate certificate hash", func(tx *sql.Tx) error {
			if err := lock(tx); err != nil {
				return err
			}
			return fn(tx)
		})
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := lock(conn); err != nil {
		return err
	}
	defer func() {
		if _, err := s.exec(context.WithoutCancel(ctx), conn, s.d.Queries.UnlockCertHash, Args{"sha256": hash}); err != nil {
			s.logger.Info("msg", "unlocking certificate hash", "err", err)
			conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}()
	return fn(conn)
}

// RetrieveMigrationCheckins implements storage.MigrationStore. It streams
// one query; the caller's channel paces it.
func (s *Store) RetrieveMigrationCheckins(ctx context.Context, c chan<- any) error {
	rows, err := s.query(ctx, s.db, s.d.Queries.SelectMigration, Args{})
	if err != nil {
		return fmt.Errorf("retrieving migration check-ins: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var deviceID, id string
		var kind int
		var raw []byte
		if err := rows.Scan(&deviceID, &kind, &id, &raw); err != nil {
			return fmt.Errorf("retrieving migration check-ins: %w", err)
		}
		msg, err := mdm.DecodeCheckin(raw)
		if err != nil {
			return fmt.Errorf("decoding stored check-in of %s: %w", id, err)
		}
		select {
		case c <- msg:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("retrieving migration check-ins: %w", err)
	}
	return nil
}
