package sqlstore

import (
	"context"
	"fmt"
	"time"
)

// EnrollQueries is the SQL text of what enrollment needs: the SCEP
// challenge store. Expiry times are Unix
// nanoseconds, compared with the server's clock, not the database's.
type EnrollQueries struct {
	// UpsertChallenge stores :challenge with :expires_at, replacing the
	// expiry of an existing row.
	UpsertChallenge string
	// DeleteChallenge deletes :challenge if its expires_at is after :now.
	DeleteChallenge string
	// PruneChallenges deletes the rows whose expires_at is at or before
	// :now.
	PruneChallenges string
}

// StoreSCEPChallenge implements storage.SCEPChallengeStore. It drops
// expired challenges first.
func (s *Store) StoreSCEPChallenge(ctx context.Context, key string, expires time.Time) error {
	q := &s.d.Challenges
	if _, err := s.execRetry(ctx, "PruneChallenges", q.PruneChallenges, Args{"now": time.Now().UnixNano()}); err != nil {
		return fmt.Errorf("pruning challenges: %w", err)
	}
	if _, err := s.execRetry(ctx, "UpsertChallenge", q.UpsertChallenge, Args{"challenge": key, "expires_at": expires.UnixNano()}); err != nil {
		return fmt.Errorf("storing challenge: %w", err)
	}
	return nil
}

// ConsumeSCEPChallenge implements storage.SCEPChallengeStore: one
// conditional delete, so the database lets only one caller remove the
// row.
func (s *Store) ConsumeSCEPChallenge(ctx context.Context, key string) (bool, error) {
	n, err := s.execRetry(ctx, "DeleteChallenge", s.d.Challenges.DeleteChallenge, Args{"challenge": key, "now": time.Now().UnixNano()})
	if err != nil {
		return false, fmt.Errorf("consuming challenge: %w", err)
	}
	return n == 1, nil
}
