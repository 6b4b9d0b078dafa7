package inmem

import (
	"context"
	"time"

	"github.com/nanomdm/nanomdm/storage"
)

// RetrieveFleetCounts implements storage.FleetCounter.
func (s *Storage) RetrieveFleetCounts(ctx context.Context, now time.Time) (*storage.FleetCounts, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := &storage.FleetCounts{}
	for _, e := range s.enrollments {
		if e.push == nil {
			continue
		}
		out.Add(e.push.Topic, e.typ, e.enabled, storage.SeenWindow(now, e.lastSeen))
		out.Queued += len(e.queue)
	}
	return out, nil
}

var _ storage.FleetCounter = (*Storage)(nil)
