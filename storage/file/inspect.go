package file

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/storage"
)

// The inspection reads walk the enrollments directory: a page costs a
// directory listing of every device (and of its users) plus a few file
// reads per enrollment looked at. That suits the fleets this backend is
// for; the SQL backends answer from indexes.

// Ping implements storage.Pinger: the storage directory must still be
// ours and readable.
func (s *Storage) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b, err := os.ReadFile(filepath.Join(s.dir, formatFile))
	if err != nil {
		return fmt.Errorf("reading storage format: %w", err)
	}
	if string(b) != formatVersion {
		return fmt.Errorf("%w: %s: format file changed", ErrUnknownLayout, s.dir)
	}
	if _, err := os.Stat(filepath.Join(s.dir, enrollmentsDir)); err != nil {
		return fmt.Errorf("reading enrollments directory: %w", err)
	}
	return nil
}

// channelIDs returns the IDs of every channel with a directory, device
// channels and user channels, sorted bytewise.
func (s *Storage) channelIDs() ([]string, error) {
	devices, err := subdirs(filepath.Join(s.dir, enrollmentsDir))
	if err != nil {
		return nil, fmt.Errorf("listing enrollments: %w", err)
	}
	ids := make([]string, 0, len(devices))
	for _, dev := range devices {
		c, err := s.channel(dev)
		if err != nil {
			continue // not ours: never created by this backend
		}
		chans, err := s.withUsers(c)
		if err != nil {
			return nil, err
		}
		for _, ch := range chans {
			ids = append(ids, ch.id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// candidates returns the sorted IDs after the cursor to look at: the
// given ones, or else every channel.
func (s *Storage) candidates(ids []string, after string) ([]string, error) {
	if len(ids) > 0 {
		ids = slices.Clone(ids)
		slices.Sort(ids)
		ids = slices.Compact(ids)
	} else {
		var err error
		if ids, err = s.channelIDs(); err != nil {
			return nil, err
		}
	}
	i, _ := slices.BinarySearch(ids, after)
	for i < len(ids) && ids[i] <= after {
		i++
	}
	return ids[i:], nil
}

// deviceFacts is what user channels share with their device.
type deviceFacts struct {
	serial    string
	bootstrap bool
}

func (s *Storage) deviceFacts(deviceID string) (deviceFacts, error) {
	var f deviceFacts
	dev, err := s.channel(deviceID)
	if err != nil {
		return f, err
	}
	raw, err := readFile(dev.path(authenticateFile))
	if err != nil {
		return f, fmt.Errorf("reading authenticate of %s: %w", deviceID, err)
	}
	if len(raw) > 0 {
		msg, err := mdm.DecodeCheckin(raw)
		if err != nil {
			return f, fmt.Errorf("decoding authenticate of %s: %w", deviceID, err)
		}
		if a, ok := msg.(*mdm.Authenticate); ok {
			f.serial = a.SerialNumber
		}
	}
	if f.bootstrap, err = exists(dev.path(bootstrapTokenFile)); err != nil {
		return f, fmt.Errorf("reading bootstrap token of %s: %w", deviceID, err)
	}
	return f, nil
}

// lastSeen returns the modification time of c's last_seen file.
func lastSeen(c channel) (time.Time, error) {
	fi, err := os.Stat(c.path(lastSeenFile))
	if errors.Is(err, fs.ErrNotExist) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	return fi.ModTime().UTC().Truncate(time.Microsecond), nil
}

// RetrieveEnrollments implements storage.EnrollmentLister.
func (s *Storage) RetrieveEnrollments(ctx context.Context, q *storage.EnrollmentQuery) ([]storage.Enrollment, error) {
	ids, err := s.candidates(q.IDs, q.After)
	if err != nil {
		return nil, err
	}
	limit := q.PageSize()
	devices := map[string]deviceFacts{}
	var out []storage.Enrollment
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		c, err := s.channel(id)
		if err != nil {
			continue // an invalid ID names no enrollment
		}
		st, err := readState(c)
		if err != nil {
			return nil, err
		}
		if !st.known() {
			continue
		}
		dev, ok := devices[c.deviceID]
		if !ok {
			if dev, err = s.deviceFacts(c.deviceID); err != nil {
				return nil, err
			}
			devices[c.deviceID] = dev
		}
		e := storage.Enrollment{
			ID:                id,
			Type:              st.Type,
			Enabled:           st.Enabled,
			SerialNumber:      dev.serial,
			Topic:             st.Topic,
			TokenUpdateTally:  st.Tally,
			HasBootstrapToken: dev.bootstrap,
		}
		if c.isUser() {
			e.ParentID = c.deviceID
		}
		if e.LastSeen, err = lastSeen(c); err != nil {
			return nil, fmt.Errorf("reading last seen of %s: %w", id, err)
		}
		if !q.Matches(&e) {
			continue
		}
		out = append(out, e)
		if len(out) == limit {
			break
		}
	}
	return out, nil
}

// unixTime turns Unix nanoseconds into a time, 0 into the zero time.
func unixTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC().Truncate(time.Microsecond)
}

// RetrieveQueue implements storage.QueueLister. The cursor is an entry's
// enqueue time in Unix nanoseconds, unique within its queue.
func (s *Storage) RetrieveQueue(ctx context.Context, id, cursor string, limit int) ([]storage.QueuedCommand, error) {
	after := int64(-1)
	if cursor != "" {
		var err error
		if after, err = strconv.ParseInt(cursor, 10, 64); err != nil {
			return nil, fmt.Errorf("%w: queue cursor %q", storage.ErrBadCursor, cursor)
		}
	}
	if limit <= 0 {
		limit = storage.DefaultInspectLimit
	}
	c, err := s.channel(id)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %w", storage.ErrUnknownEnrollment, id, err)
	}
	st, err := readState(c)
	if err != nil {
		return nil, err
	}
	if !st.known() {
		return nil, fmt.Errorf("%w: %q", storage.ErrUnknownEnrollment, id)
	}
	q, err := readQueue(c)
	if err != nil {
		return nil, err
	}
	var out []storage.QueuedCommand
	for _, e := range q {
		if e.at <= after {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if e.done {
			continue
		}
		qc := storage.QueuedCommand{
			CommandUUID: e.uuid,
			RequestType: e.requestType,
			EnqueuedAt:  unixTime(e.at),
			NotNowCount: e.notNowTally,
			NotNowAt:    unixTime(e.notNowAt),
			Cursor:      strconv.FormatInt(e.at, 10),
		}
		if e.notNowTally > 0 {
			qc.Status = mdm.StatusNotNow
		}
		out = append(out, qc)
		if len(out) == limit {
			break
		}
	}
	return out, nil
}

// RetrieveCommandResults implements storage.CommandResultLister: the
// final report or else the NotNow one in the result log of each channel,
// in ID order.
func (s *Storage) RetrieveCommandResults(ctx context.Context, uuid, after string, limit int, statusOnly bool) ([]storage.CommandResult, error) {
	if _, err := s.safeName(commandsDir, uuid); err != nil {
		return nil, nil // no command can have this UUID
	}
	if limit <= 0 {
		limit = storage.DefaultInspectLimit
	}
	ids, err := s.candidates(nil, after)
	if err != nil {
		return nil, err
	}
	var out []storage.CommandResult
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		c, err := s.channel(id)
		if err != nil {
			continue
		}
		raw, err := readResult(c, uuid)
		if err != nil {
			return nil, fmt.Errorf("reading result of %s for %s: %w", uuid, id, err)
		}
		if raw == nil {
			continue
		}
		report, err := mdm.DecodeCommandResults(raw)
		if err != nil {
			return nil, fmt.Errorf("decoding result of %s for %s: %w", uuid, id, err)
		}
		r := storage.CommandResult{ID: id, Status: report.Status}
		if !statusOnly {
			r.Raw = raw
		}
		out = append(out, r)
		if len(out) == limit {
			break
		}
	}
	return out, nil
}
