package sqltest

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/storage/internal/sqlstore"
	"github.com/nanomdm/nanomdm/storage/storagetest"
)

// TestDeadlockRetryable provokes a real deadlock (two transactions taking
// two rows in opposite order) and checks that the dialect classifies the
// victim's error as retryable, so the store re-runs rather than failing a
// device request.
func TestDeadlockRetryable(t *testing.T, b *Backend, d *sqlstore.Dialect) {
	s := b.OpenFresh(t, "")
	db := s.DB()
	ids := []string{storagetest.RandomUUID(), storagetest.RandomUUID()}
	SeedEnrollments(t, b, db, ids)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	update := "UPDATE " + b.Table("enrollments") + " SET token_update_tally = token_update_tally + 1 WHERE id = " + b.Placeholder(1)
	txs := make([]*sql.Tx, 2)
	for i := range txs {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		if _, err := tx.ExecContext(ctx, update, ids[i]); err != nil {
			t.Fatalf("transaction %d, first row: %v", i, err)
		}
		txs[i] = tx
	}
	type result struct {
		tx  int
		err error
	}
	results := make(chan result, 2)
	for i := range txs {
		go func() {
			_, err := txs[i].ExecContext(ctx, update, ids[1-i])
			results <- result{i, err}
		}()
	}
	first := <-results
	txs[first.tx].Rollback()
	second := <-results
	victim := first
	if first.err == nil {
		victim = second
	}
	if victim.err == nil {
		t.Fatal("no transaction failed: no deadlock")
	}
	t.Logf("deadlock victim's error: %v", victim.err)
	if !d.IsRetryable(victim.err) {
		t.Errorf("deadlock error %v not classified retryable", victim.err)
	}
	if d.IsRetryable(context.Canceled) {
		t.Errorf("context.Canceled classified retryable")
	}
}
