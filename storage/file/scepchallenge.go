package file

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// scepChallengesDir holds one file per SCEP challenge key, holding its
// expiry in Unix nanoseconds.
const scepChallengesDir = "scep-challenges"

// pruneEvery is how many stored challenges pass between two sweeps of
// expired ones: a sweep reads the whole directory.
const pruneEvery = 64

// StoreSCEPChallenge implements storage.SCEPChallengeStore.
func (s *Storage) StoreSCEPChallenge(_ context.Context, key string, expires time.Time) error {
	if err := os.MkdirAll(filepath.Join(s.dir, scepChallengesDir), dirMode); err != nil {
		return fmt.Errorf("creating challenge directory: %w", err)
	}
	p, err := s.safeName(scepChallengesDir, key)
	if err != nil {
		return err
	}
	if s.challengeStores.Add(1)%pruneEvery == 0 {
		s.pruneSCEPChallenges()
	}
	if err := s.writeFile(p, []byte(strconv.FormatInt(expires.UnixNano(), 10))); err != nil {
		return fmt.Errorf("storing challenge: %w", err)
	}
	return nil
}

// ConsumeSCEPChallenge implements storage.SCEPChallengeStore. Removing
// the file decides: of several removers only one succeeds.
func (s *Storage) ConsumeSCEPChallenge(_ context.Context, key string) (bool, error) {
	p, err := s.safeName(scepChallengesDir, key)
	if err != nil {
		return false, nil
	}
	expires, err := readExpiry(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("reading challenge: %w", err)
	}
	if err := os.Remove(p); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("consuming challenge: %w", err)
	}
	return expires.After(s.now()), nil
}

func readExpiry(p string) (time.Time, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return time.Time{}, err
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(0, n), nil
}

// pruneSCEPChallenges removes expired challenges; errors only leave them
// for the next sweep.
func (s *Storage) pruneSCEPChallenges() {
	dir := filepath.Join(s.dir, scepChallengesDir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	now := s.now()
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tempPrefix) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if exp, err := readExpiry(p); err == nil && !exp.After(now) {
			os.Remove(p)
		}
	}
}
