package file

import (
	"context"
	"fmt"
	"time"

	"github.com/nanomdm/nanomdm/storage"
)

// RetrieveFleetCounts implements storage.FleetCounter. It reads the state,
// last-seen time and queue of every channel: a walk of the whole store.
func (s *Storage) RetrieveFleetCounts(ctx context.Context, now time.Time) (*storage.FleetCounts, error) {
	ids, err := s.channelIDs()
	if err != nil {
		return nil, err
	}
	out := &storage.FleetCounts{}
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		c, err := s.channel(id)
		if err != nil {
			continue
		}
		st, err := readState(c)
		if err != nil {
			return nil, err
		}
		if !st.known() {
			continue
		}
		seen, err := lastSeen(c)
		if err != nil {
			return nil, fmt.Errorf("reading last seen of %s: %w", id, err)
		}
		out.Add(st.Topic, st.Type, st.Enabled, storage.SeenWindow(now, seen))
		q, err := readQueue(c)
		if err != nil {
			return nil, err
		}
		out.Queued += len(pending(q))
	}
	return out, nil
}

var _ storage.FleetCounter = (*Storage)(nil)
