package file

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Format 1 of the storage directory kept each report in a file of its
// own: results/<CommandUUID> (final, which also took the command off the
// queue) and notnow/<CommandUUID> (the latest NotNow) in each enrollment's
// directory. New moves them into the enrollment's result log once and then
// marks the directory format 2.
const (
	formatVersion1 = "nanomdm-file-storage 1\n"
	legacyResults  = "results"
	legacyNotNow   = "notnow"
)

// migrateFormat1 moves the reports of every channel into its result log
// and writes the format 2 marker. Each step can be repeated, so a crash
// in the middle is finished by the next New.
func (s *Storage) migrateFormat1() error {
	devices, err := subdirs(filepath.Join(s.dir, enrollmentsDir))
	if err != nil {
		return fmt.Errorf("listing enrollments: %w", err)
	}
	for _, dev := range devices {
		c, err := s.channel(dev)
		if err != nil {
			continue // not ours: never created by this backend
		}
		chans, err := s.withUsers(c)
		if err != nil {
			return err
		}
		for _, ch := range chans {
			if err := s.migrateChannel(ch); err != nil {
				return fmt.Errorf("%s: %w", ch.id, err)
			}
		}
	}
	return s.writeFile(filepath.Join(s.dir, formatFile), []byte(formatVersion))
}

// legacyReport is a report file of format 1.
type legacyReport struct {
	kind byte
	name string
	path string
	mod  int64
}

// migrateChannel appends the report files of c to its result log (oldest
// first, skipping those a previous, interrupted run already moved), marks
// the commands with a final report done in the queue, and removes the
// report directories.
func (s *Storage) migrateChannel(c channel) error {
	var reports []legacyReport
	for _, d := range []struct {
		kind byte
		dir  string
	}{{kindFinal, legacyResults}, {kindNotNow, legacyNotNow}} {
		entries, err := os.ReadDir(c.path(d.dir))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		for _, e := range entries {
			if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), tempPrefix) || len(e.Name()) > 255 {
				continue
			}
			fi, err := e.Info()
			if err != nil {
				return err
			}
			reports = append(reports, legacyReport{d.kind, e.Name(), filepath.Join(c.path(d.dir), e.Name()), fi.ModTime().UnixNano()})
		}
	}
	if len(reports) == 0 {
		return s.removeLegacyDirs(c)
	}
	slices.SortStableFunc(reports, func(a, b legacyReport) int {
		switch {
		case a.mod < b.mod:
			return -1
		case a.mod > b.mod:
			return 1
		}
		return 0
	})

	log, err := readFile(c.path(resultLogFile))
	if err != nil {
		return err
	}
	moved := map[string]bool{}
	scanRecords(log, func(r resultRecord) bool {
		moved[string(r.kind)+r.uuid] = true
		return true
	})
	done := map[string]bool{}
	for _, r := range reports {
		if r.kind == kindFinal {
			done[r.name] = true
		}
		if moved[string(r.kind)+r.name] {
			continue
		}
		raw, err := os.ReadFile(r.path)
		if err != nil {
			return err
		}
		log = appendRecord(log, r.kind, r.name, raw)
	}
	if err := s.writeFile(c.path(resultLogFile), log); err != nil {
		return err
	}

	q, err := readQueue(c)
	if err != nil {
		return err
	}
	for i := range q {
		q[i].done = q[i].done || done[q[i].uuid]
	}
	if err := s.writeQueue(c, q); err != nil {
		return err
	}
	return s.removeLegacyDirs(c)
}

func (s *Storage) removeLegacyDirs(c channel) error {
	for _, d := range []string{legacyResults, legacyNotNow} {
		if err := os.RemoveAll(c.path(d)); err != nil {
			return err
		}
	}
	return nil
}
