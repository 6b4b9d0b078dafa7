package file

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/storage"
	"github.com/nanomdm/nanomdm/storage/storagetest"
)

func TestOutboxReopen(t *testing.T) {
	dir := t.TempDir()
	storagetest.RunOutboxReopen(t, func(t *testing.T) storage.OutboxStore { return newStore(t, dir) })
}

// TestOutboxTornFiles: files a crash leaves half written (a temporary
// file, an event file whose lengths do not add up) are ignored and
// removed when the storage opens; whole events are kept.
func TestOutboxTornFiles(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir)
	ctx := context.Background()
	good := storage.OutboxEvent{Key: "DEV-1", Body: []byte(`{"n":1}`)}
	if err := s.Append(ctx, []storage.OutboxEvent{good}); err != nil {
		t.Fatalf("append: %v", err)
	}
	spool := filepath.Join(dir, outboxDir)
	torn := map[string]string{
		".tmp-123":             "nanomdm-outbox 1 1 5 7\nDEV-2{\"n\":",
		"00000000000000000001": "nanomdm-outbox 1 1 5 7\nDEV-2{\"n\":",
		"00000000000000000002": "garbage",
		"00000000000000000003": "",
	}
	for name, data := range torn {
		if err := os.WriteFile(filepath.Join(spool, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s = newStore(t, dir)
	events, err := s.Claim(ctx, "o", 10, time.Minute)
	if err != nil || len(events) != 1 || string(events[0].Body) != string(good.Body) || events[0].Key != good.Key {
		t.Fatalf("claim after reopening: have %+v, %v; want the one whole event", events, err)
	}
	for name := range torn {
		if _, err := os.Stat(filepath.Join(spool, name)); !os.IsNotExist(err) {
			t.Errorf("torn file %s: still there (%v)", name, err)
		}
	}
}
