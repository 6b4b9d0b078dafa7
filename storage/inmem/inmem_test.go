package inmem

import (
	"bytes"
	"testing"

	"github.com/nanomdm/nanomdm/storage"
	"github.com/nanomdm/nanomdm/storage/storagetest"
)

func TestStorage(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.AllStorage { return New() })
}

// TestUnlockToken checks what the contract cannot observe through the
// storage interfaces: a TokenUpdate without an UnlockToken keeps the one
// stored before.
func TestUnlockToken(t *testing.T) {
	s := New()
	dev := storagetest.NewDevice(t)
	dev.UnlockToken = []byte("unlock-token-1")
	dev.Enroll(t, s)
	dev.UnlockToken = nil
	if err := s.StoreTokenUpdate(dev.Request(), dev.TokenUpdate(t)); err != nil {
		t.Fatalf("token update: %v", err)
	}
	if have := s.enrollments[dev.ID()].unlockToken; !bytes.Equal(have, []byte("unlock-token-1")) {
		t.Errorf("unlock token after TokenUpdate without one: have %q, want %q", have, "unlock-token-1")
	}
	dev.UnlockToken = []byte("unlock-token-2")
	if err := s.StoreTokenUpdate(dev.Request(), dev.TokenUpdate(t)); err != nil {
		t.Fatalf("token update: %v", err)
	}
	if have := s.enrollments[dev.ID()].unlockToken; !bytes.Equal(have, dev.UnlockToken) {
		t.Errorf("unlock token after a new one: have %q, want %q", have, dev.UnlockToken)
	}
}

func BenchmarkCommandLoop(b *testing.B) {
	storagetest.BenchmarkCommandLoop(b, New())
}
