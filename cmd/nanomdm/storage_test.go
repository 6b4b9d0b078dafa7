package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nanomdm/nanomdm/cmd/internal/cli"
	"github.com/nanomdm/nanomdm/log"
	"github.com/nanomdm/nanomdm/storage/allmulti"
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
		{"too many DSNs", &config{storage: cli.StringList{"inmem"}, storageDSN: cli.StringList{"a", "b"}}, "more -storage-dsn"},
	} {
		_, _, err := openStorages(context.Background(), tc.c, log.Nop)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: have error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}
