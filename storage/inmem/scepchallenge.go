package inmem

import (
	"context"
	"time"
)

// StoreSCEPChallenge implements storage.SCEPChallengeStore. Expired
// challenges are dropped on the way.
func (s *Storage) StoreSCEPChallenge(_ context.Context, key string, expires time.Time) error {
	now := time.Now()
	s.challengeMu.Lock()
	defer s.challengeMu.Unlock()
	if s.challenges == nil {
		s.challenges = make(map[string]time.Time)
	}
	for k, exp := range s.challenges {
		if !exp.After(now) {
			delete(s.challenges, k)
		}
	}
	s.challenges[key] = expires
	return nil
}

// ConsumeSCEPChallenge implements storage.SCEPChallengeStore.
func (s *Storage) ConsumeSCEPChallenge(_ context.Context, key string) (bool, error) {
	s.challengeMu.Lock()
	defer s.challengeMu.Unlock()
	exp, ok := s.challenges[key]
	delete(s.challenges, key)
	return ok && exp.After(time.Now()), nil
}
