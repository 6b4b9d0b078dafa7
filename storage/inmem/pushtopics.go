package inmem

import (
	"context"
	"maps"
	"slices"
)

// RetrievePushTopics implements storage.PushTopicLister.
func (s *Storage) RetrievePushTopics(context.Context) ([]string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Sorted(maps.Keys(s.pushCerts)), nil
}
