package sqlstore

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/storage"
)

// Ping implements storage.Pinger. database/sql does not retry a ping that
// fails with driver.ErrBadConn: it only discards that pooled connection.
// After the database comes back every idle connection may be dead, so the
// ping is retried until one is live or a new one is opened (at most once
// per idle connection, plus one).
func (s *Store) Ping(ctx context.Context) error {
	err := s.db.PingContext(ctx)
	for tries := s.db.Stats().Idle + 1; errors.Is(err, driver.ErrBadConn) && tries > 0; tries-- {
		err = s.db.PingContext(ctx)
	}
	if err != nil {
		return fmt.Errorf("%s: pinging database: %w", s.d.Name, err)
	}
	return nil
}

// RetrieveEnrollmentIDByCertHash implements storage.CertAuthRetriever.
func (s *Store) RetrieveEnrollmentIDByCertHash(ctx context.Context, hash string) (string, error) {
	var id string
	found, err := s.scanOne(ctx, s.db, s.d.Queries.SelectEnrollmentIDByCertHash, Args{"sha256": hash}, &id)
	switch {
	case err != nil:
		return "", fmt.Errorf("retrieving enrollment of certificate hash %s: %w", hash, err)
	case !found:
		return "", fmt.Errorf("%w: no enrollment has certificate hash %q", storage.ErrUnknownEnrollment, hash)
	}
	return id, nil
}

// microTime turns Unix microseconds into a UTC time, 0 into the zero time.
func microTime(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us).UTC()
}

// micros turns a time into Unix microseconds, the zero time into 0 (the
// "no bound" of the filters).
func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

// RetrieveEnrollments implements storage.EnrollmentLister. A page is one
// query that walks the enrollments primary key from the cursor and stops
// after the limit: its cost does not grow with the offset. With IDs the
// IDs are sorted and looked up in batches until the page is full.
func (s *Store) RetrieveEnrollments(ctx context.Context, q *storage.EnrollmentQuery) ([]storage.Enrollment, error) {
	limit := q.PageSize()
	enabled := -1
	if q.Enabled != nil {
		enabled = 0
		if *q.Enabled {
			enabled = 1
		}
	}
	args := Args{
		"after":     q.After,
		"serial":    q.SerialNumber,
		"type":      q.Type,
		"enabled":   enabled,
		"before_us": micros(q.LastSeenBefore),
		"after_us":  micros(q.LastSeenAfter),
	}
	out := make([]storage.Enrollment, 0, min(limit, 1024))
	if len(q.IDs) == 0 {
		args["limit"] = limit
		if err := s.enrollments(ctx, s.d.Queries.SelectEnrollments, args, &out); err != nil {
			return nil, fmt.Errorf("retrieving enrollments: %w", err)
		}
		return out, nil
	}
	ids, _ := validIDs(q.IDs)
	slices.Sort(ids)
	i, _ := slices.BinarySearch(ids, q.After)
	for i < len(ids) && ids[i] <= q.After {
		i++
	}
	for _, batch := range batches(ids[i:], s.batchSize(1)) {
		args["ids"] = batch
		args["limit"] = limit - len(out)
		if err := s.enrollments(ctx, s.d.Queries.SelectEnrollmentsByIDs, args, &out); err != nil {
			return nil, fmt.Errorf("retrieving enrollments: %w", err)
		}
		if len(out) == limit {
			break
		}
	}
	return out, nil
}

func (s *Store) enrollments(ctx context.Context, text string, args Args, out *[]storage.Enrollment) error {
	rows, err := s.query(ctx, s.db, text, args)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var e storage.Enrollment
		var deviceID string
		var lastSeen int64
		if err := rows.Scan(&e.ID, &deviceID, &e.Type, &e.Enabled, &e.SerialNumber, &e.Topic,
			&lastSeen, &e.TokenUpdateTally, &e.HasBootstrapToken); err != nil {
			return err
		}
		if deviceID != e.ID {
			e.ParentID = deviceID
		}
		e.LastSeen = microTime(lastSeen)
		*out = append(*out, e)
	}
	return rows.Err()
}

// queueStart is a position before every queue row: priorities are
// SMALLINT, so none reaches it.
const queueStart = math.MaxInt16 + 1

// RetrieveQueue implements storage.QueueLister. The cursor is a row's
// priority and sequence number ("priority.seq"); the page reads the
// next-command index from there.
func (s *Store) RetrieveQueue(ctx context.Context, id, cursor string, limit int) ([]storage.QueuedCommand, error) {
	if err := mdm.ValidateEnrollmentID(id); err != nil {
		return nil, fmt.Errorf("%w: %q: %w", storage.ErrUnknownEnrollment, id, err)
	}
	priority, seq := int64(queueStart), int64(0)
	if cursor != "" {
		p, q, ok := strings.Cut(cursor, ".")
		var perr, qerr error
		priority, perr = strconv.ParseInt(p, 10, 16)
		seq, qerr = strconv.ParseInt(q, 10, 64)
		if !ok || perr != nil || qerr != nil {
			return nil, fmt.Errorf("%w: queue cursor %q", storage.ErrBadCursor, cursor)
		}
	}
	if limit <= 0 {
		limit = storage.DefaultInspectLimit
	}
	rows, err := s.query(ctx, s.db, s.d.Queries.SelectQueue, Args{
		"id": id, "priority": priority, "seq": seq, "limit": limit,
	})
	if err != nil {
		return nil, fmt.Errorf("retrieving queue of %s: %w", id, err)
	}
	defer rows.Close()
	var out []storage.QueuedCommand
	for rows.Next() {
		var c storage.QueuedCommand
		var enqueued, notNowAt, prio, sq int64
		if err := rows.Scan(&c.CommandUUID, &c.RequestType, &enqueued, &c.Status, &c.NotNowCount, &notNowAt, &prio, &sq); err != nil {
			return nil, fmt.Errorf("retrieving queue of %s: %w", id, err)
		}
		c.EnqueuedAt, c.NotNowAt = microTime(enqueued), microTime(notNowAt)
		c.Cursor = strconv.FormatInt(prio, 10) + "." + strconv.FormatInt(sq, 10)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("retrieving queue of %s: %w", id, err)
	}
	if len(out) == 0 {
		// An empty queue, or no enrollment at all?
		found, err := s.scanStrings(ctx, s.db, s.d.Queries.SelectEnrollmentIDs, Args{"ids": []string{id}})
		if err != nil {
			return nil, fmt.Errorf("retrieving enrollment %s: %w", id, err)
		}
		if len(found) == 0 {
			return nil, fmt.Errorf("%w: %q", storage.ErrUnknownEnrollment, id)
		}
	}
	return out, nil
}

// RetrieveCommandResults implements storage.CommandResultLister. The page
// reads the results' (command_uuid, id) index from the cursor.
func (s *Store) RetrieveCommandResults(ctx context.Context, uuid, after string, limit int, statusOnly bool) ([]storage.CommandResult, error) {
	if limit <= 0 {
		limit = storage.DefaultInspectLimit
	}
	text := s.d.Queries.SelectCommandResults
	if statusOnly {
		text = s.d.Queries.SelectCommandStatuses
	}
	rows, err := s.query(ctx, s.db, text, Args{"uuid": uuid, "after": after, "limit": limit})
	if err != nil {
		return nil, fmt.Errorf("retrieving results of %s: %w", uuid, err)
	}
	defer rows.Close()
	var out []storage.CommandResult
	for rows.Next() {
		var r storage.CommandResult
		dest := []any{&r.ID, &r.Status}
		if !statusOnly {
			dest = append(dest, &r.Raw)
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("retrieving results of %s: %w", uuid, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("retrieving results of %s: %w", uuid, err)
	}
	return out, nil
}
