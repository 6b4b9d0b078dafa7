package sqlstore

import (
	"context"
	"crypto/x509"
	"database/sql"
	"encoding/pem"
	"fmt"
	"strings"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/storage"
)

// RetrieveIdentityCert implements storage.EnrollmentDetailer: the
// identity_cert column of the device.
func (s *Store) RetrieveIdentityCert(ctx context.Context, id string) (*x509.Certificate, error) {
	if mdm.ValidateEnrollmentID(id) != nil {
		return nil, nil
	}
	deviceID, _, _ := strings.Cut(id, ":")
	var text sql.NullString
	found, err := s.scanOne(ctx, s.db, s.d.Queries.SelectIdentityCert, Args{"id": deviceID}, &text)
	if err != nil {
		return nil, fmt.Errorf("retrieving identity certificate of %s: %w", deviceID, err)
	}
	if !found || !text.Valid || text.String == "" {
		return nil, nil
	}
	block, _ := pem.Decode([]byte(text.String))
	if block == nil {
		return nil, fmt.Errorf("reading identity certificate of %s: no PEM block", deviceID)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing identity certificate of %s: %w", deviceID, err)
	}
	return cert, nil
}

// RetrieveRecentResults implements storage.EnrollmentDetailer. It reads
// the results of one enrollment by their primary key and sorts them.
func (s *Store) RetrieveRecentResults(ctx context.Context, id string, n int) ([]storage.RecentResult, error) {
	if mdm.ValidateEnrollmentID(id) != nil {
		return nil, nil
	}
	if n <= 0 {
		n = storage.DefaultInspectLimit
	}
	rows, err := s.query(ctx, s.db, s.d.Queries.SelectRecentResults, Args{"id": id, "limit": n})
	if err != nil {
		return nil, fmt.Errorf("retrieving results of %s: %w", id, err)
	}
	defer rows.Close()
	var out []storage.RecentResult
	for rows.Next() {
		var r storage.RecentResult
		var at int64
		if err := rows.Scan(&r.CommandUUID, &r.RequestType, &r.Status, &at, &r.Raw); err != nil {
			return nil, fmt.Errorf("retrieving results of %s: %w", id, err)
		}
		r.At = microTime(at)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("retrieving results of %s: %w", id, err)
	}
	return out, nil
}

// RemoveQueuedCommand implements storage.QueuedCommandRemover. With
// delete=1 the queue row is deleted, and the command too when no queue
// refers to it any more.
func (s *Store) RemoveQueuedCommand(ctx context.Context, id, uuid string) error {
	if err := mdm.ValidateEnrollmentID(id); err != nil {
		return fmt.Errorf("%w: %q: %w", storage.ErrUnknownEnrollment, id, err)
	}
	text := s.d.Queries.DeactivateQueued
	if s.cfg.Delete {
		text = s.d.Queries.DeleteQueued
	}
	n, err := s.execRetry(ctx, "remove queued command", text, Args{"id": id, "uuid": uuid})
	if err != nil {
		return fmt.Errorf("removing %s from queue of %s: %w", uuid, id, err)
	}
	if n > 0 {
		if s.cfg.Delete {
			s.deleteOrphanCommands(ctx, []string{uuid})
		}
		return nil
	}
	// Not outstanding there, or no enrollment at all?
	found, err := s.scanStrings(ctx, s.db, s.d.Queries.SelectEnrollmentIDs, Args{"ids": []string{id}})
	if err != nil {
		return fmt.Errorf("retrieving enrollment %s: %w", id, err)
	}
	if len(found) == 0 {
		return fmt.Errorf("%w: %q", storage.ErrUnknownEnrollment, id)
	}
	return fmt.Errorf("%w: %q", storage.ErrUnknownCommand, uuid)
}
