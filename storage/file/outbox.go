package file

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nanomdm/nanomdm/storage"
	"github.com/nanomdm/nanomdm/storage/internal/memoutbox"
)

// outboxDir is the spool of webhook events: one file per event, named by
// its ID (20 decimal digits, so names sort in ID order), written
// atomically like every other file. The index (keys, order, leases) is
// kept in memory and rebuilt from the files when the storage opens;
// leases do not survive a restart, which is what a crash needs.
const outboxDir = "outbox"

// outboxMagic starts every event file. The header line is followed by
// the key and the body:
//
//	nanomdm-outbox 1 <created Unix ns> <key bytes> <body bytes>\n<key><body>
//
// A file whose lengths do not add up (torn by power loss without
// WithSync) is ignored and removed.
const outboxMagic = "nanomdm-outbox 1"

func (s *Storage) outboxPath(id int64) string {
	return filepath.Join(s.dir, outboxDir, fmt.Sprintf("%020d", id))
}

func encodeOutboxEvent(ev *storage.OutboxEvent) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %d %d %d\n", outboxMagic, ev.Created.UnixNano(), len(ev.Key), len(ev.Body))
	b.WriteString(ev.Key)
	b.Write(ev.Body)
	return b.Bytes()
}

var errTornEvent = errors.New("outbox event file is incomplete or malformed")

func decodeOutboxEvent(id int64, data []byte) (storage.OutboxEvent, error) {
	header, rest, ok := bytes.Cut(data, []byte("\n"))
	fields := strings.Fields(string(header))
	if !ok || len(fields) != 5 || fields[0]+" "+fields[1] != outboxMagic {
		return storage.OutboxEvent{}, errTornEvent
	}
	var n [3]int64
	for i, f := range fields[2:] {
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil || (i > 0 && v < 0) {
			return storage.OutboxEvent{}, errTornEvent
		}
		n[i] = v
	}
	if int64(len(rest)) != n[1]+n[2] {
		return storage.OutboxEvent{}, errTornEvent
	}
	return storage.OutboxEvent{
		ID:      id,
		Key:     string(rest[:n[1]]),
		Body:    rest[n[1]:],
		Created: time.Unix(0, n[0]),
	}, nil
}

// loadOutbox creates the spool directory and indexes the events in it.
func (s *Storage) loadOutbox() error {
	s.outbox = memoutbox.New()
	dir := filepath.Join(s.dir, outboxDir)
	if err := os.Mkdir(dir, dirMode); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("creating outbox directory: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("reading outbox directory: %w", err)
	}
	var events []storage.OutboxEvent
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, tempPrefix) {
			os.Remove(filepath.Join(dir, name))
			continue
		}
		id, err := strconv.ParseInt(name, 10, 64)
		if err != nil || len(name) != 20 {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return fmt.Errorf("reading outbox event: %w", err)
		}
		ev, err := decodeOutboxEvent(id, data)
		if err != nil {
			os.Remove(filepath.Join(dir, name))
			continue
		}
		ev.Body = nil // read again when claimed
		events = append(events, ev)
	}
	s.outbox.Add(events...)
	return nil
}

// Append implements storage.OutboxStore: each event is in its file
// before Append returns (and on disk, with WithSync).
func (s *Storage) Append(_ context.Context, events []storage.OutboxEvent) error {
	for i := range events {
		ev := &events[i]
		now := s.now()
		ev.ID = s.outbox.NextID(now)
		if ev.Created.IsZero() {
			ev.Created = now
		}
		if err := s.writeFile(s.outboxPath(ev.ID), encodeOutboxEvent(ev)); err != nil {
			return fmt.Errorf("writing outbox event: %w", err)
		}
		s.outbox.Add(storage.OutboxEvent{ID: ev.ID, Key: ev.Key, Created: ev.Created})
	}
	return nil
}

// Claim implements storage.OutboxStore. Events whose file has gone
// (trimmed meanwhile) are left out.
func (s *Storage) Claim(_ context.Context, owner string, n int, lease time.Duration) ([]storage.OutboxEvent, error) {
	claimed := s.outbox.Claim(owner, n, lease, s.now())
	out := claimed[:0]
	for _, ev := range claimed {
		data, err := os.ReadFile(s.outboxPath(ev.ID))
		if errors.Is(err, fs.ErrNotExist) {
			s.outbox.Delete([]int64{ev.ID})
			continue
		} else if err != nil {
			s.outbox.Release(owner, []int64{ev.ID}, time.Time{})
			return nil, fmt.Errorf("reading outbox event: %w", err)
		}
		full, err := decodeOutboxEvent(ev.ID, data)
		if err != nil {
			s.removeOutboxFiles(s.outbox.Delete([]int64{ev.ID}))
			continue
		}
		out = append(out, full)
	}
	return out, nil
}

func (s *Storage) removeOutboxFiles(ids []int64) error {
	var errs []error
	for _, id := range ids {
		if err := os.Remove(s.outboxPath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("removing outbox events: %w", err)
	}
	return nil
}

// Delete implements storage.OutboxStore.
func (s *Storage) Delete(_ context.Context, ids []int64) error {
	return s.removeOutboxFiles(s.outbox.Delete(ids))
}

// Release implements storage.OutboxStore.
func (s *Storage) Release(_ context.Context, owner string, ids []int64, retryAt time.Time) error {
	s.outbox.Release(owner, ids, retryAt)
	return nil
}

// Trim implements storage.OutboxStore.
func (s *Storage) Trim(_ context.Context, maxEvents int, before time.Time) (int, error) {
	ids := s.outbox.Trim(maxEvents, before)
	return len(ids), s.removeOutboxFiles(ids)
}

// OutboxStats implements storage.OutboxStore.
func (s *Storage) OutboxStats(context.Context) (storage.OutboxStats, error) {
	return s.outbox.Stats(), nil
}
