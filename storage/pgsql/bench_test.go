package pgsql

import (
	"testing"

	"github.com/nanomdm/nanomdm/storage/internal/sqlstore/sqltest"
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

// BenchmarkEnqueue100k is one /v1/enqueue call naming 100,000 enrolled
// IDs, seeded in bulk:
//
//	go test -run '^$' -bench Enqueue100k -benchtime 3x ./storage/pgsql/
func BenchmarkEnqueue100k(b *testing.B) {
	s := backend.OpenFresh(b, "")
	storagetest.BenchmarkEnqueueMany(b, s, 100_000, func(ids []string) {
		sqltest.SeedEnrollments(b, backend, s.DB(), ids)
	})
}
