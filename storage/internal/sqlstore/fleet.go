package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/nanomdm/nanomdm/storage"
)

// RetrieveFleetCounts implements storage.FleetCounter: one grouped scan
// of the enrollments and one count of the active queue rows.
func (s *Store) RetrieveFleetCounts(ctx context.Context, now time.Time) (*storage.FleetCounts, error) {
	args := Args{}
	for i, w := range storage.LastSeenWindows {
		args[fmt.Sprintf("seen%d", i)] = now.Add(-w).UnixMicro()
	}
	rows, err := s.query(ctx, s.db, s.d.Queries.SelectFleetCounts, args)
	if err != nil {
		return nil, fmt.Errorf("counting enrollments: %w", err)
	}
	defer rows.Close()
	out := &storage.FleetCounts{}
	for rows.Next() {
		var g storage.FleetGroup
		if err := rows.Scan(&g.Topic, &g.Type, &g.Enabled, &g.Seen, &g.N); err != nil {
			return nil, fmt.Errorf("counting enrollments: %w", err)
		}
		out.Groups = append(out.Groups, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("counting enrollments: %w", err)
	}
	if _, err := s.scanOne(ctx, s.db, s.d.Queries.CountQueued, nil, &out.Queued); err != nil {
		return nil, fmt.Errorf("counting queued commands: %w", err)
	}
	return out, nil
}

var _ storage.FleetCounter = (*Store)(nil)
