package pgsql

import (
	"testing"

	"github.com/nanomdm/nanomdm/storage/storagetest"
)

// BenchmarkHandlerRoundTrip is one report→next-command request through the
// MDM handler, identity middleware and services on a fresh database of
// NANOMDM_TEST_PGSQL_DSN:
//
//	go test -run '^$' -bench HandlerRoundTrip ./storage/pgsql/
func BenchmarkHandlerRoundTrip(b *testing.B) {
	for _, options := range []string{"", "delete=1"} {
		b.Run("options="+options, func(b *testing.B) {
			storagetest.BenchmarkHandlerRoundTrip(b, backend.OpenFresh(b, options))
		})
	}
}
