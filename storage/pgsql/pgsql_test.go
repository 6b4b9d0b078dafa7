package pgsql

import (
	"context"
	"strings"
	"testing"

	"github.com/lib/pq"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/storage/internal/sqlstore"
	"github.com/nanomdm/nanomdm/storage/internal/sqlstore/sqltest"
	"github.com/nanomdm/nanomdm/storage/storagetest"
	"github.com/nanomdm/nanomdm/storage/storagetest/sqldb"
)

// backend describes PostgreSQL to the shared SQL tests. Each test gets a
// schema of its own in the database of NANOMDM_TEST_PGSQL_DSN.
var backend = &sqltest.Backend{
	Name:                 "pgsql",
	EnvVar:               "NANOMDM_TEST_PGSQL_DSN",
	DriverName:           "postgres",
	NumberedPlaceholders: true,
	Isolate:              sqldb.PgSQLSchema,
	Open: func(ctx context.Context, dsn, options string, opts ...sqlstore.Option) (sqltest.Store, error) {
		return New(ctx, dsn, options, opts...)
	},
}

func TestShared(t *testing.T) {
	sqltest.RunShared(t, backend, dialect)
}

// TestExplainNextCommand shows the plan of the next-command lookup on a
// queue of realistic shape and checks that it reads the next-command
// index in order: no sequential scan, no sort.
func TestExplainNextCommand(t *testing.T) {
	s := backend.OpenFresh(t, "")
	db := s.DB()
	devs := make([]*storagetest.Channel, 300)
	ids := make([]string, len(devs))
	for i := range devs {
		devs[i] = storagetest.NewDevice(t)
		ids[i] = devs[i].ID()
	}
	sqltest.SeedEnrollments(t, backend, db, ids)
	// Commands for the whole fleet, then two of each device's own.
	for i := 0; i < 10; i++ {
		storagetest.Enqueue(t, s, storagetest.NewCommand(t, "DeviceInformation"), devs...)
	}
	for i := 0; i < 2; i++ {
		for _, d := range devs {
			storagetest.Enqueue(t, s, storagetest.NewCommand(t, "ProfileList"), d)
		}
	}
	if _, err := db.Exec("ANALYZE"); err != nil {
		t.Fatalf("analyze: %v", err)
	}
	for _, q := range []string{queries.NextCommand, queries.NextCommandSkipNotNow} {
		query := strings.ReplaceAll(q, ":id", pq.QuoteLiteral(ids[42]))
		text := strings.Join(sqltest.Strings(t, db, "EXPLAIN "+query), "\n")
		t.Logf("EXPLAIN%s\n%s", query, text)
		if !strings.Contains(text, "enrollment_queue_next_idx") {
			t.Errorf("plan does not use enrollment_queue_next_idx")
		}
		for _, bad := range []string{"Seq Scan", "Sort"} {
			if strings.Contains(text, bad) {
				t.Errorf("plan has %q", bad)
			}
		}
	}
}

func TestInspectionAtScale(t *testing.T) {
	sqltest.TestInspectionAtScale(t, backend, dialect, sqltest.Plans{
		Enrollments: []string{"Index Scan using enrollments_pkey on enrollments e"},
		Results:     []string{"command_results_command_uuid_idx"},
		Bad:         []string{"Seq Scan", "Sort"},
	})
}

func TestUpgradeToResultsIndex(t *testing.T) {
	sqltest.TestUpgrade(t, backend, dialect, 1,
		[]string{"DROP TABLE outbox", "DROP TABLE scep_challenges", "DROP INDEX command_results_command_uuid_idx"},
		`SELECT COUNT(*) FROM pg_indexes
		 WHERE schemaname = current_schema() AND indexname = 'command_results_command_uuid_idx'`, 1)
}

// TestPreparedStatements: by default the command-loop statements are
// prepared on the server, once per connection; prepare=0 turns that off.
// With a pool of one connection, pg_prepared_statements (which lists the
// statements of the session asking) shows them.
func TestPreparedStatements(t *testing.T) {
	for _, tc := range []struct {
		options string
		want    bool
	}{
		{"max_open_conns=1", true},
		{"max_open_conns=1,prepare=0", false},
	} {
		t.Run(tc.options, func(t *testing.T) {
			s := backend.OpenFresh(t, tc.options)
			dev := storagetest.NewDevice(t)
			dev.Enroll(t, s)
			cmd := storagetest.NewCommand(t, "ProfileList")
			storagetest.Enqueue(t, s, cmd, dev)
			for i := 0; i < 2; i++ {
				storagetest.WantNext(t, s, dev, false, cmd)
			}
			storagetest.StoreReport(t, s, dev, mdm.StatusAcknowledged, cmd.CommandUUID)
			storagetest.WantNext(t, s, dev, false, nil)

			have := sqltest.Strings(t, s.DB(), "SELECT statement FROM pg_prepared_statements")
			found := map[string]bool{}
			for _, text := range have {
				for name, q := range map[string]string{"NextCommand": queries.NextCommand, "ReportDone": queries.ReportDone} {
					if strings.Contains(text, strings.TrimSpace(strings.Split(q, ":id")[0])) {
						found[name] = true
					}
				}
			}
			if tc.want && (!found["NextCommand"] || !found["ReportDone"]) {
				t.Errorf("prepared on the session: %d statements, NextCommand %v, ReportDone %v; want both", len(have), found["NextCommand"], found["ReportDone"])
			}
			if !tc.want && len(have) != 0 {
				t.Errorf("prepare=0: %d statements prepared on the session, want none:\n%s", len(have), strings.Join(have, "\n---\n"))
			}
			// Each prepared once, however often it ran.
			seen := map[string]int{}
			for _, text := range have {
				seen[text]++
				if seen[text] > 1 {
					t.Errorf("statement prepared %d times on one session:\n%s", seen[text], text)
				}
			}
		})
	}
}
