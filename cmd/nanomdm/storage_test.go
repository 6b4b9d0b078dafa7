package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nanomdm/nanomdm/cmd/internal/cli"
	"github.com/nanomdm/nanomdm/log"
	"github.com/nanomdm/nanomdm/log/gokit"
	"github.com/nanomdm/nanomdm/storage/allmulti"
	"github.com/nanomdm/nanomdm/storage/file"
	"github.com/nanomdm/nanomdm/storage/storagetest"
)

func TestOpenStoragesMulti(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	c := &config{
		storage:        cli.StringList{"file", "inmem"},
		storageDSN:     cli.StringList{dir},
		storageOptions: cli.StringList{"", ""},
	}
	s, closeAll, err := openStorages(context.Background(), c, log.Nop)
	if err != nil {
		t.Fatalf("opening file + inmem: %v", err)
	}
	defer closeAll()
	if _, ok := s.(*allmulti.Storage); !ok {
		t.Fatalf("two backends: have %T, want *allmulti.Storage", s)
	}
	dev := storagetest.NewDevice(t)
	dev.Enroll(t, s)
	cmd := storagetest.NewCommand(t, "DeviceInformation")
	storagetest.Enqueue(t, s, cmd, dev)
	storagetest.WantNext(t, s, dev, false, cmd)

	for _, tc := range []struct {
		name string
		c    *config
		want string
	}{
		{"bad option of the second", &config{
			storage:        cli.StringList{"inmem", "inmem"},
			storageOptions: cli.StringList{"", "delete=1"},
		}, "storage 2 (inmem)"},
		{"unknown second backend", &config{storage: cli.StringList{"inmem", "oracle"}}, `unknown storage backend "oracle"`},
		{"too many DSNs", &config{storage: cli.StringList{"inmem"}, storageDSN: cli.StringList{"a", "b"}}, "2 -storage-dsn and 0 -storage-options for 1 -storage"},
		{"-dsn and -storage-dsn", &config{storage: cli.StringList{"file"}, storageDSN: cli.StringList{"a"}, dsn: cli.StringList{"a"}},
			"-dsn is the deprecated name of -storage-dsn, give only -storage-dsn"},
	} {
		_, _, err := openStorages(context.Background(), tc.c, log.Nop)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: have error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}

// TestDeprecatedDSN checks that -dsn still works and says it is
// deprecated.
func TestDeprecatedDSN(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	var logs bytes.Buffer
	s, closeAll, err := openStorages(context.Background(), &config{dsn: cli.StringList{dir}}, gokit.New(&logs, false))
	if err != nil {
		t.Fatalf("opening with -dsn: %v", err)
	}
	defer closeAll()
	if fs, ok := s.(*file.Storage); !ok || fs == nil {
		t.Errorf("-dsn %s opened %T, want the file backend", dir, s)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("-dsn %s: the file backend did not use it: %v", dir, err)
	}
	if !strings.Contains(logs.String(), "-dsn (NANOMDM_DSN) is deprecated: use -storage-dsn") {
		t.Errorf("log %q does not say -dsn is deprecated", logs.String())
	}
}
