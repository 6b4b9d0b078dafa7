package allmulti

import (
	"context"
	"time"

	"github.com/nanomdm/nanomdm/storage"
)

// StoreSCEPChallenge implements storage.SCEPChallengeStore (every
// backend).
func (s *Storage) StoreSCEPChallenge(ctx context.Context, key string, expires time.Time) error {
	return s.all(ctx, "StoreSCEPChallenge", func(o storage.AllStorage) error {
		return o.StoreSCEPChallenge(ctx, key, expires)
	})
}

// ConsumeSCEPChallenge implements storage.SCEPChallengeStore: every
// backend consumes the key, the first one's answer counts.
func (s *Storage) ConsumeSCEPChallenge(ctx context.Context, key string) (bool, error) {
	var first *bool
	err := s.all(ctx, "ConsumeSCEPChallenge", func(o storage.AllStorage) error {
		ok, err := o.ConsumeSCEPChallenge(ctx, key)
		if first == nil {
			first = &ok
		}
		return err
	})
	return first != nil && *first, err
}
