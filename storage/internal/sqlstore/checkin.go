package sqlstore

import (
	"context"
	"database/sql"
	"encoding/hex"
	"fmt"
	"slices"

	"github.com/nanomdm/nanomdm/cryptoutil"
	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/storage"
)

// StoreAuthenticate implements storage.CheckinStore.
func (s *Store) StoreAuthenticate(r *mdm.Request, msg *mdm.Authenticate) error {
	ctx, id, deviceID, err := requestIDs(r)
	if err != nil {
		return err
	}
	if id != deviceID {
		return fmt.Errorf("%w: Authenticate on user channel %q", mdm.ErrInvalidEnrollment, id)
	}
	var certPEM any
	if r.Certificate != nil {
		certPEM = string(cryptoutil.PEMCertificate(r.Certificate.Raw))
	}
	var cleared []string
	err = s.inTx(ctx, "authenticate", func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, s.d.Queries.UpsertAuthenticate, Args{
			"id":            id,
			"identity_cert": certPEM,
			"serial_number": msg.SerialNumber,
			"authenticate":  []byte(msg.Raw),
		})
		if err != nil {
			return err
		}
		if _, err := s.exec(ctx, tx, s.d.Queries.DisableDevice, Args{"device_id": id}); err != nil {
			return err
		}
		cleared, err = s.clearQueues(ctx, tx, id, true)
		return err
	})
	if err != nil {
		return fmt.Errorf("storing authenticate of %s: %w", id, err)
	}
	s.deleteOrphanCommands(ctx, cleared)
	return nil
}

// clearQueues empties the queue of id and, with users set, of the user
// channels of device id. With delete=1 the rows are deleted and the UUIDs
// they named are returned for deleteOrphanCommands, to be run after commit.
func (s *Store) clearQueues(ctx context.Context, tx *sql.Tx, id string, users bool) ([]string, error) {
	ids := []string{id}
	if users {
		channels, err := s.scanStrings(ctx, tx, s.d.Queries.SelectChannelIDs, Args{"device_id": id})
		if err != nil {
			return nil, err
		}
		for _, c := range channels {
			if c != id {
				ids = append(ids, c)
			}
		}
	}
	var uuids []string
	for _, batch := range batches(ids, s.batchSize(1)) {
		if !s.cfg.Delete {
			if _, err := s.exec(ctx, tx, s.d.Queries.DeactivateQueues, Args{"ids": batch}); err != nil {
				return nil, err
			}
			continue
		}
		found, err := s.scanStrings(ctx, tx, s.d.Queries.SelectQueuedCommands, Args{"ids": batch})
		if err != nil {
			return nil, err
		}
		uuids = append(uuids, found...)
		if _, err := s.exec(ctx, tx, s.d.Queries.DeleteQueues, Args{"ids": batch}); err != nil {
			return nil, err
		}
	}
	slices.Sort(uuids)
	return slices.Compact(uuids), nil
}

// deleteOrphanCommands deletes those of uuids that no queue row names.
// It runs after the deleting transaction committed, so that of several
// enrollments finishing the same command concurrently the last one to
// commit sees the others' deletions. A failure leaves an unreferenced
// command behind, which is harmless: it is logged, not returned.
func (s *Store) deleteOrphanCommands(ctx context.Context, uuids []string) {
	for _, batch := range batches(uuids, s.batchSize(1)) {
		if _, err := s.execRetry(ctx, "delete commands", s.d.Queries.DeleteOrphanCommands, Args{"uuids": batch}); err != nil {
			s.logger.Info("msg", "deleting commands no enrollment refers to", "commands", len(batch), "err", err)
		}
	}
}

// StoreTokenUpdate implements storage.CheckinStore.
func (s *Store) StoreTokenUpdate(r *mdm.Request, msg *mdm.TokenUpdate) error {
	ctx, id, deviceID, err := requestIDs(r)
	if err != nil {
		return err
	}
	err = s.inTx(ctx, "token update", func(tx *sql.Tx) error {
		var err error
		if id == deviceID {
			_, err = s.exec(ctx, tx, s.d.Queries.UpsertDeviceTokenUpdate, Args{
				"id":           id,
				"token_update": []byte(msg.Raw),
				"unlock_token": nilIfEmpty(msg.UnlockToken),
			})
		} else {
			_, err = s.exec(ctx, tx, s.d.Queries.UpsertUserTokenUpdate, Args{
				"id":              id,
				"device_id":       deviceID,
				"user_short_name": msg.UserShortName,
				"user_long_name":  msg.UserLongName,
				"token_update":    []byte(msg.Raw),
			})
		}
		if err != nil {
			return err
		}
		_, err = s.exec(ctx, tx, s.d.Queries.UpsertEnrollment, Args{
			"id":         id,
			"device_id":  deviceID,
			"type":       r.EnrollID.Type.String(),
			"topic":      msg.Topic,
			"push_magic": msg.PushMagic,
			"token_hex":  hex.EncodeToString(msg.Token),
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("storing token update of %s: %w", id, err)
	}
	return nil
}

// StoreUserAuthenticate implements storage.CheckinStore.
func (s *Store) StoreUserAuthenticate(r *mdm.Request, msg *mdm.UserAuthenticate) error {
	ctx, id, deviceID, err := requestIDs(r)
	if err != nil {
		return err
	}
	q := s.d.Queries.UpsertUserAuthenticate
	if msg.DigestResponse != "" {
		q = s.d.Queries.UpsertUserAuthenticateDigest
	}
	_, err = s.execRetry(ctx, "user authenticate", q, Args{
		"id":              id,
		"device_id":       deviceID,
		"user_short_name": msg.UserShortName,
		"user_long_name":  msg.UserLongName,
		"raw":             []byte(msg.Raw),
	})
	if err != nil {
		return fmt.Errorf("storing user authenticate of %s: %w", id, err)
	}
	return nil
}

// Disable implements storage.CheckinStore.
func (s *Store) Disable(r *mdm.Request) error {
	ctx, id, deviceID, err := requestIDs(r)
	if err != nil {
		return err
	}
	if id != deviceID {
		return storage.ErrInvalidCheckOut
	}
	if _, err := s.execRetry(ctx, "disable", s.d.Queries.DisableDevice, Args{"device_id": id}); err != nil {
		return fmt.Errorf("disabling %s: %w", id, err)
	}
	return nil
}

// RetrieveTokenUpdateTally implements storage.TokenUpdateTallyStore.
func (s *Store) RetrieveTokenUpdateTally(ctx context.Context, id string) (int, error) {
	if err := mdm.ValidateEnrollmentID(id); err != nil {
		return 0, err
	}
	var tally int
	if _, err := s.scanOne(ctx, s.db, s.d.Queries.SelectTally, Args{"id": id}, &tally); err != nil {
		return 0, fmt.Errorf("retrieving token update tally of %s: %w", id, err)
	}
	return tally, nil
}

// StoreBootstrapToken implements storage.BootstrapTokenStore.
func (s *Store) StoreBootstrapToken(r *mdm.Request, msg *mdm.SetBootstrapToken) error {
	ctx, _, deviceID, err := requestIDs(r)
	if err != nil {
		return err
	}
	n, err := s.execRetry(ctx, "bootstrap token", s.d.Queries.StoreBootstrapToken, Args{
		"id":    deviceID,
		"token": nilIfEmpty(msg.BootstrapToken.BootstrapToken),
	})
	switch {
	case err != nil:
		return fmt.Errorf("storing bootstrap token of %s: %w", deviceID, err)
	case n == 0:
		return fmt.Errorf("storing bootstrap token: %w: %q", storage.ErrUnknownEnrollment, deviceID)
	}
	return nil
}

// RetrieveBootstrapToken implements storage.BootstrapTokenStore. A NULL
// or empty token is no token.
func (s *Store) RetrieveBootstrapToken(r *mdm.Request, _ *mdm.GetBootstrapToken) (*mdm.BootstrapToken, error) {
	ctx, _, deviceID, err := requestIDs(r)
	if err != nil {
		return nil, err
	}
	var token []byte
	if _, err := s.scanOne(ctx, s.db, s.d.Queries.SelectBootstrapToken, Args{"id": deviceID}, &token); err != nil {
		return nil, fmt.Errorf("retrieving bootstrap token of %s: %w", deviceID, err)
	}
	if len(token) == 0 {
		return nil, nil
	}
	return &mdm.BootstrapToken{BootstrapToken: token}, nil
}
