package inmem

import (
	"testing"

	"github.com/nanomdm/nanomdm/storage/storagetest"
	"github.com/nanomdm/nanomdm/storage/storagetest/handlerbench"
)

// BenchmarkHandlerRoundTrip is one report→next-command request through the
// MDM handler, identity middleware and services on inmem storage:
//
//	go test -run '^$' -bench HandlerRoundTrip ./storage/inmem/
func BenchmarkHandlerRoundTrip(b *testing.B) {
	handlerbench.RoundTrip(b, New())
}

// BenchmarkEnqueue100k is one /v1/enqueue call naming 100,000 enrolled
// IDs:
//
//	go test -run '^$' -bench Enqueue100k -benchtime 3x ./storage/inmem/
func BenchmarkEnqueue100k(b *testing.B) {
	handlerbench.EnqueueMany(b, New(), 100_000, nil)
}

func BenchmarkOutboxAppend(b *testing.B) {
	storagetest.BenchmarkOutboxAppend(b, New())
}
