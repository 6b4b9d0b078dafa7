package inmem

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/storage"
)

// Ping implements storage.Pinger: memory always answers.
func (s *Storage) Ping(ctx context.Context) error { return ctx.Err() }

// infoLocked describes e for the inspection API. Times are cut to
// microseconds, as the SQL backends keep them.
func (s *Storage) infoLocked(e *enrollment) storage.Enrollment {
	dev := e
	if e.parentID != "" {
		if d := s.enrollments[e.parentID]; d != nil {
			dev = d
		}
	}
	return storage.Enrollment{
		ID:                e.id,
		ParentID:          e.parentID,
		Type:              e.typ,
		Enabled:           e.enabled,
		SerialNumber:      dev.serial,
		Topic:             e.push.Topic,
		LastSeen:          e.lastSeen.Round(0).Truncate(time.Microsecond),
		TokenUpdateTally:  e.tally,
		HasBootstrapToken: dev.bootstrapToken != nil,
	}
}

// RetrieveEnrollments implements storage.EnrollmentLister. It sorts the
// candidate IDs on every call: fine for the test-sized stores it is for.
func (s *Storage) RetrieveEnrollments(ctx context.Context, q *storage.EnrollmentQuery) ([]storage.Enrollment, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var ids []string
	if len(q.IDs) > 0 {
		ids = append(ids, q.IDs...)
	} else {
		ids = make([]string, 0, len(s.enrollments))
		for id := range s.enrollments {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	limit := q.PageSize()
	var out []storage.Enrollment
	for _, id := range ids {
		if id <= q.After {
			continue
		}
		e := s.enrollments[id]
		if e == nil || e.push == nil {
			continue
		}
		info := s.infoLocked(e)
		if !q.Matches(&info) {
			continue
		}
		out = append(out, info)
		if len(out) == limit {
			break
		}
	}
	return out, nil
}

// RetrieveQueue implements storage.QueueLister. The cursor is the
// store-wide enqueue sequence number of an entry.
func (s *Storage) RetrieveQueue(ctx context.Context, id, cursor string, limit int) ([]storage.QueuedCommand, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var after uint64
	if cursor != "" {
		var err error
		if after, err = strconv.ParseUint(cursor, 10, 64); err != nil {
			return nil, fmt.Errorf("%w: queue cursor %q", storage.ErrBadCursor, cursor)
		}
	}
	if limit <= 0 {
		limit = storage.DefaultInspectLimit
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	e := s.enrollments[id]
	if e == nil || e.push == nil {
		return nil, fmt.Errorf("%w: %q", storage.ErrUnknownEnrollment, id)
	}
	var out []storage.QueuedCommand
	for _, q := range e.queue {
		if q.seq <= after {
			continue
		}
		qc := storage.QueuedCommand{
			CommandUUID: q.uuid,
			RequestType: s.commands[q.uuid].Command.RequestType,
			EnqueuedAt:  q.at.Round(0).Truncate(time.Microsecond),
			NotNowCount: q.notNowTally,
			Cursor:      strconv.FormatUint(q.seq, 10),
		}
		if q.notNowTally > 0 {
			qc.Status = mdm.StatusNotNow
			qc.NotNowAt = q.notNowAt.Round(0).Truncate(time.Microsecond)
		}
		out = append(out, qc)
		if len(out) == limit {
			break
		}
	}
	return out, nil
}

// RetrieveCommandResults implements storage.CommandResultLister. It
// looks through every stored result: fine for test-sized stores.
func (s *Storage) RetrieveCommandResults(ctx context.Context, uuid, after string, limit int, statusOnly bool) ([]storage.CommandResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = storage.DefaultInspectLimit
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []storage.CommandResult
	for k, r := range s.results {
		if k.uuid != uuid || k.id <= after {
			continue
		}
		cr := storage.CommandResult{ID: k.id, Status: r.status}
		if !statusOnly {
			cr.Raw = clone(r.raw)
		}
		out = append(out, cr)
	}
	slices.SortFunc(out, func(a, b storage.CommandResult) int { return strings.Compare(a.ID, b.ID) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}
