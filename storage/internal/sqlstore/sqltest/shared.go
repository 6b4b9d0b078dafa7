package sqltest

import (
	"testing"

	"github.com/nanomdm/nanomdm/storage"
	"github.com/nanomdm/nanomdm/storage/internal/sqlstore"
	"github.com/nanomdm/nanomdm/storage/storagetest"
	"github.com/nanomdm/nanomdm/storage/storagetest/handlerbench"
)

// bothModes are the storage options of the two queue modes: results
// kept, and delete=1.
var bothModes = []string{"", "delete=1"}

// RunShared runs, as subtests, every SQL test that takes nothing of a
// backend but b and its dialect d: the contract suite in both queue
// modes, the schema, round trips, pool, large enqueue, scaling and
// deadlock retries, readiness after dropped connections, one
// certificate bound once by two instances, and the outbox kept across
// reopening.
func RunShared(t *testing.T, b *Backend, d *sqlstore.Dialect) {
	t.Run("Contract", func(t *testing.T) { RunContract(t, b, "") })
	t.Run("ContractDelete", func(t *testing.T) { RunContract(t, b, "delete=1") })
	t.Run("Schema", func(t *testing.T) { TestSchema(t, b, d) })
	t.Run("RoundTrips", func(t *testing.T) {
		for _, options := range bothModes {
			t.Run("options="+options, func(t *testing.T) { TestRoundTrips(t, b, options) })
		}
	})
	t.Run("Pool", func(t *testing.T) { TestPool(t, b) })
	t.Run("LargeEnqueue", func(t *testing.T) { TestLargeEnqueue(t, b, "") })
	t.Run("Scaling", func(t *testing.T) {
		for _, options := range bothModes {
			t.Run("options="+options, func(t *testing.T) { TestScaling(t, b, options, DefaultScaling) })
		}
	})
	t.Run("DeadlockRetryable", func(t *testing.T) { TestDeadlockRetryable(t, b, d) })
	t.Run("ReadyAfterDrop", func(t *testing.T) { TestReadyAfterDrop(t, b) })
	t.Run("CertBindingAcrossInstances", func(t *testing.T) { TestCertBindingAcrossInstances(t, b) })
	t.Run("OutboxReopen", func(t *testing.T) {
		dsn := b.FreshDSN(t)
		storagetest.RunOutboxReopen(t, func(t *testing.T) storage.OutboxStore { return b.OpenDSN(t, dsn, "") })
	})
}

// BenchmarkHandlerRoundTrip is one report→next-command request through the
// MDM handler, identity middleware and services, in both queue modes, on
// a fresh database of b.
func BenchmarkHandlerRoundTrip(tb *testing.B, b *Backend) {
	for _, options := range bothModes {
		tb.Run("options="+options, func(tb *testing.B) {
			handlerbench.RoundTrip(tb, b.OpenFresh(tb, options))
		})
	}
}

// BenchmarkCommandLoop is storagetest.BenchmarkCommandLoop in both queue
// modes on a fresh database of b.
func BenchmarkCommandLoop(tb *testing.B, b *Backend) {
	for _, options := range bothModes {
		tb.Run("options="+options, func(tb *testing.B) {
			storagetest.BenchmarkCommandLoop(tb, b.OpenFresh(tb, options))
		})
	}
}

// BenchmarkEnqueue100k is one /v1/enqueue call naming 100,000 enrolled
// IDs, seeded in bulk, on a fresh database of b.
func BenchmarkEnqueue100k(tb *testing.B, b *Backend) {
	s := b.OpenFresh(tb, "")
	handlerbench.EnqueueMany(tb, s, 100_000, func(ids []string) {
		SeedEnrollments(tb, b, s.DB(), ids)
	})
}

// BenchmarkOutboxAppend is one webhook event appended to the outbox of a
// fresh database of b.
func BenchmarkOutboxAppend(tb *testing.B, b *Backend) {
	storagetest.BenchmarkOutboxAppend(tb, b.OpenFresh(tb, ""))
}
