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

// FuzzOutboxEvent: decoding any file content never panics, and what
// encodes decodes back unchanged.
func FuzzOutboxEvent(f *testing.F) {
	f.Add("DEV-1", []byte(`{"n":1}`), int64(1))
	f.Add("", []byte(nil), int64(0))
	f.Add("a b\n", []byte("nanomdm-outbox 1 1 1 1\nxy"), int64(-5))
	f.Fuzz(func(t *testing.T, key string, body []byte, created int64) {
		decodeOutboxEvent(1, body)
		ev := storage.OutboxEvent{ID: 7, Key: key, Body: body, Created: time.Unix(0, created)}
		have, err := decodeOutboxEvent(7, encodeOutboxEvent(&ev))
		if err != nil || have.Key != key || string(have.Body) != string(body) || !have.Created.Equal(ev.Created) {
			t.Errorf("round trip of %q/%q/%d: have %+v, %v", key, body, created, have, err)
		}
	})
}
