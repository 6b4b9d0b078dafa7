package allmulti

import (
	"context"
	"fmt"
	"time"

	"github.com/nanomdm/nanomdm/storage"
)

// challenges runs call on every backend as a storage.SCEPChallengeStore
// and returns the first backend's error.
func (s *Storage) challenges(ctx context.Context, method string, call func(storage.SCEPChallengeStore) error) error {
	return s.all(ctx, method, func(o storage.AllStorage) error {
		c, ok := o.(storage.SCEPChallengeStore)
		if !ok {
			return fmt.Errorf("allmulti: storage backend %T cannot keep SCEP challenges", o)
		}
		return call(c)
	})
}

// StoreSCEPChallenge implements storage.SCEPChallengeStore (every
// backend).
func (s *Storage) StoreSCEPChallenge(ctx context.Context, key string, expires time.Time) error {
	return s.challenges(ctx, "StoreSCEPChallenge", func(c storage.SCEPChallengeStore) error {
		return c.StoreSCEPChallenge(ctx, key, expires)
	})
}

// ConsumeSCEPChallenge implements storage.SCEPChallengeStore: every
// backend consumes the key, the first one's answer counts.
func (s *Storage) ConsumeSCEPChallenge(ctx context.Context, key string) (bool, error) {
	var first *bool
	err := s.challenges(ctx, "ConsumeSCEPChallenge", func(c storage.SCEPChallengeStore) error {
		ok, err := c.ConsumeSCEPChallenge(ctx, key)
		if first == nil {
			first = &ok
		}
		return err
	})
	return first != nil && *first, err
}

// RetrievePushTopics implements storage.PushTopicLister (first backend).
func (s *Storage) RetrievePushTopics(ctx context.Context) ([]string, error) {
	r, err := firstAs[storage.PushTopicLister](s, "list push topics")
	if err != nil {
		return nil, err
	}
	return r.RetrievePushTopics(ctx)
}
