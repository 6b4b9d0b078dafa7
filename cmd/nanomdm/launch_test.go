package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/mdm/simulator"
	"github.com/nanomdm/nanomdm/storage"
)

// launchConfig says how launch starts a server.
type launchConfig struct {
	// ca issues the device identities the server trusts; nil means a
	// fresh one. Two servers sharing a CA model a migration.
	ca *simulator.CA
	// storage is the storage flags; nil means file storage in a
	// temporary directory.
	storage []string
	// extra flags, appended last.
	extra []string
}

// launch runs the server with the CA and storage flags of lc and returns
// it with the storage it opened, so a test can check what it stored.
func launch(t *testing.T, lc launchConfig) (*server, storage.AllStorage) {
	t.Helper()
	dir := t.TempDir()
	ca := lc.ca
	if ca == nil {
		var err error
		if ca, err = simulator.NewCA("e2e CA"); err != nil {
			t.Fatalf("creating CA: %v", err)
		}
	}
	caPath := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caPath, ca.CertPEM(), 0o644); err != nil {
		t.Fatalf("writing CA: %v", err)
	}
	storageFlags := lc.storage
	if storageFlags == nil {
		storageFlags = []string{"-storage", "file", "-storage-dsn", filepath.Join(dir, "db")}
	}
	args := append([]string{"-ca", caPath, "-api", testAPIKey}, storageFlags...)
	s := serveArgs(t, ca, append(args, lc.extra...))
	return s, s.store
}

// backend is the storage flags of one backend under test; each call
// gives fresh storage.
type backend struct {
	name  string
	flags func(t *testing.T) []string
}

var (
	fileBackend = backend{"file", func(t *testing.T) []string {
		return []string{"-storage", "file", "-storage-dsn", filepath.Join(t.TempDir(), "db")}
	}}
	inmemBackend = backend{"inmem", func(*testing.T) []string { return []string{"-storage", "inmem"} }}
)

// mdmStatus returns the HTTP status of a simulator error: 200 for nil,
// the answer's status for *simulator.ErrStatus, and fails the test on
// transport errors.
func mdmStatus(t *testing.T, err error) int {
	t.Helper()
	status := simulator.StatusOf(err)
	if status == 0 {
		t.Fatalf("request failed: %v", err)
	}
	return status
}

// request builds the storage request of the channel with enrollment ID id.
func request(id string) *mdm.Request {
	e := &mdm.EnrollID{Type: mdm.Device, ID: id}
	if dev, _, ok := strings.Cut(id, ":"); ok {
		e.Type, e.ParentID = mdm.User, dev
	}
	return &mdm.Request{Context: context.Background(), EnrollID: e}
}

// pushInfo returns the push data the server stored for ids.
func pushInfo(t *testing.T, s storage.PushStore, ids ...string) map[string]*mdm.Push {
	t.Helper()
	m, err := s.RetrievePushInfo(context.Background(), ids)
	if err != nil {
		t.Fatalf("retrieving push info of %v: %v", ids, err)
	}
	return m
}

// wantPush fails unless the stored push data of channel c is what c sent.
func wantPush(t *testing.T, s storage.PushStore, c *simulator.Channel) {
	t.Helper()
	have := pushInfo(t, s, c.ID())[c.ID()]
	switch {
	case have == nil:
		t.Errorf("push info of %s: have none, want topic %s", c.ID(), c.Device.Topic)
	case have.Topic != c.Device.Topic || !bytes.Equal(have.Token, c.Token) || have.PushMagic != c.PushMagic:
		t.Errorf("push info of %s: have topic %q token %x magic %q; want %q %x %q",
			c.ID(), have.Topic, have.Token, have.PushMagic, c.Device.Topic, c.Token, c.PushMagic)
	}
}

// tally returns the TokenUpdate tally of id.
func tally(t *testing.T, s storage.TokenUpdateTallyStore, id string) int {
	t.Helper()
	n, err := s.RetrieveTokenUpdateTally(context.Background(), id)
	if err != nil {
		t.Fatalf("retrieving tally of %s: %v", id, err)
	}
	return n
}
