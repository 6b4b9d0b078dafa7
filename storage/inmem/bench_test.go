package inmem

import (
	"testing"

	"github.com/nanomdm/nanomdm/storage/storagetest"
)

// BenchmarkHandlerRoundTrip is one report→next-command request through the
// MDM handler, identity middleware and services on inmem storage:
//
//	go test -run '^$' -bench HandlerRoundTrip ./storage/inmem/
func BenchmarkHandlerRoundTrip(b *testing.B) {
	storagetest.BenchmarkHandlerRoundTrip(b, New())
}
