package file

import (
	"testing"

	"github.com/nanomdm/nanomdm/storage/storagetest"
)

// BenchmarkHandlerRoundTrip is one report→next-command request through the
// MDM handler, identity middleware and services on file storage:
//
//	go test -run '^$' -bench HandlerRoundTrip ./storage/file/
func BenchmarkHandlerRoundTrip(b *testing.B) {
	s, err := New(b.TempDir())
	if err != nil {
		b.Fatalf("opening storage: %v", err)
	}
	storagetest.BenchmarkHandlerRoundTrip(b, s)
}
