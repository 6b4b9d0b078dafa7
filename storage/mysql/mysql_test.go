package mysql

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/storage/internal/sqlstore"
	"github.com/nanomdm/nanomdm/storage/internal/sqlstore/sqltest"
	"github.com/nanomdm/nanomdm/storage/storagetest"
	"github.com/nanomdm/nanomdm/storage/storagetest/sqldb"
)

// backend describes MySQL to the shared SQL tests. Each test gets a
// database of its own, named after the one of NANOMDM_TEST_MYSQL_DSN.
var backend = &sqltest.Backend{
	Name:        "mysql",
	EnvVar:      "NANOMDM_TEST_MYSQL_DSN",
	DriverName:  "mysql",
	TablePrefix: "nano_",
	Isolate:     sqldb.MySQLDatabase,
	Open: func(ctx context.Context, dsn, options string, opts ...sqlstore.Option) (sqltest.Store, error) {
		return New(ctx, dsn, options, opts...)
	},
}

func TestShared(t *testing.T) {
	sqltest.RunShared(t, backend, dialect)
}

// TestExplainNextCommand shows the plan of the next-command lookup on a
// queue of realistic shape and checks that it reads the next-command
// index without a filesort.
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
	for _, table := range []string{"nano_enrollment_queue", "nano_commands"} {
		if _, err := db.Exec("ANALYZE TABLE " + table); err != nil {
			t.Fatalf("analyze: %v", err)
		}
	}
	for _, q := range []string{queries.NextCommand, queries.NextCommandSkipNotNow} {
		query := strings.ReplaceAll(q, ":id", "'"+ids[42]+"'")
		rows, err := db.Query("EXPLAIN " + query)
		if err != nil {
			t.Fatalf("explain: %v", err)
		}
		cols, _ := rows.Columns()
		var plan []string
		var queueKey string
		for rows.Next() {
			vals := make([]sql.NullString, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			var line []string
			row := map[string]string{}
			for i, c := range cols {
				line = append(line, c+"="+vals[i].String)
				row[c] = vals[i].String
			}
			plan = append(plan, strings.Join(line, " "))
			if row["table"] == "q" {
				queueKey = row["key"]
			}
		}
		rows.Close()
		text := strings.Join(plan, "\n")
		t.Logf("EXPLAIN%s\n%s", query, text)
		if queueKey != "nano_enrollment_queue_next_idx" {
			t.Errorf("queue read through key %q, want nano_enrollment_queue_next_idx", queueKey)
		}
		if strings.Contains(text, "filesort") || strings.Contains(text, "type=ALL") {
			t.Errorf("plan sorts or scans a whole table")
		}
	}
}

// TestLargeCommand checks that a command bigger than the server's
// max_allowed_packet fails with a clear error and leaves the store
// working, and that one just under it round-trips byte for byte.
func TestLargeCommand(t *testing.T) {
	s := backend.OpenFresh(t, "")
	var limit int
	if err := s.DB().QueryRow("SELECT @@max_allowed_packet").Scan(&limit); err != nil {
		t.Fatal(err)
	}
	dev := storagetest.NewDevice(t)
	dev.Enroll(t, s)
	big := func(size int) *mdm.Command {
		payload := bytes.Repeat([]byte{0x00, 0xff, 'x', '\''}, size/4)
		cmd, err := mdm.NewCommand(storagetest.RandomUUID(), "InstallProfile", map[string]any{"Payload": payload})
		if err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	// Payloads are base64 in the XML plist: raw size is about 4/3 of size.
	tooBig := big(limit)
	_, err := s.EnqueueCommand(context.Background(), []string{dev.ID()}, tooBig)
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "max_allowed_packet") {
		t.Fatalf("enqueueing a %d-byte command (max_allowed_packet %d): have error %v, want %v", len(tooBig.Raw), limit, err, ErrTooLarge)
	}
	fits := big((limit - 96<<10) * 3 / 4)
	storagetest.Enqueue(t, s, fits, dev)
	storagetest.WantNext(t, s, dev, false, fits)
	t.Logf("max_allowed_packet %d: %d-byte command refused cleanly, %d-byte command stored", limit, len(tooBig.Raw), len(fits.Raw))
}

func TestDriverConfig(t *testing.T) {
	for _, tc := range []struct {
		dsn             string
		interpolate     bool
		maxPacket       int
		wantErrContains string
	}{
		{dsn: "u:p@tcp(db:3306)/nano", interpolate: true, maxPacket: 0},
		{dsn: "u:p@tcp(db:3306)/nano?interpolateParams=false", interpolate: false, maxPacket: 0},
		{dsn: "u:p@tcp(db:3306)/nano?maxAllowedPacket=1048576", interpolate: true, maxPacket: 1 << 20},
		{dsn: "u:p@tcp(db:3306)/", wantErrContains: "no database"},
		{dsn: "not a dsn", wantErrContains: "parsing DSN"},
	} {
		cfg, err := DriverConfig(tc.dsn)
		if tc.wantErrContains != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErrContains) {
				t.Errorf("DriverConfig(%q): have error %v, want one containing %q", tc.dsn, err, tc.wantErrContains)
			}
			continue
		}
		if err != nil {
			t.Errorf("DriverConfig(%q): %v", tc.dsn, err)
			continue
		}
		if !cfg.ClientFoundRows || cfg.InterpolateParams != tc.interpolate || cfg.MaxAllowedPacket != tc.maxPacket {
			t.Errorf("DriverConfig(%q): have clientFoundRows=%v interpolateParams=%v maxAllowedPacket=%d; want true %v %d",
				tc.dsn, cfg.ClientFoundRows, cfg.InterpolateParams, cfg.MaxAllowedPacket, tc.interpolate, tc.maxPacket)
		}
	}
}

func TestInspectionAtScale(t *testing.T) {
	sqltest.TestInspectionAtScale(t, backend, dialect, sqltest.Plans{
		Enrollments: []string{"table=e type=range possible_keys=PRIMARY key=PRIMARY"},
		Results:     []string{"key=nano_command_results_command_uuid_idx"},
		Bad:         []string{"filesort", "type=ALL"},
	})
}

func TestUpgradeToResultsIndex(t *testing.T) {
	sqltest.TestUpgrade(t, backend, dialect, 1,
		[]string{"DROP TABLE nano_outbox", "DROP TABLE nano_scep_challenges", "DROP INDEX nano_command_results_command_uuid_idx ON nano_command_results"},
		`SELECT COUNT(*) FROM information_schema.statistics
		 WHERE table_schema = DATABASE() AND index_name = 'nano_command_results_command_uuid_idx'`, 2)
}

// TestReportCrashBetweenStatements: MySQL stores a report in two
// statements, the result and then the queue update. When the second never
// happens (the server dies, the connection drops), the result is kept and
// the command stays queued, to be sent again; a command must never end up
// acknowledged without its result. The second statement is made to fail
// by a copy of the dialect whose queue update names a missing column.
func TestReportCrashBetweenStatements(t *testing.T) {
	for _, status := range []string{mdm.StatusAcknowledged, mdm.StatusNotNow} {
		t.Run(status, func(t *testing.T) {
			s := backend.OpenFresh(t, "")
			broken := *dialect
			broken.Queries.ReportDone = "UPDATE nano_enrollment_queue SET no_such_column = 1 WHERE id = :id AND command_uuid = :uuid"
			broken.Queries.ReportNotNow = broken.Queries.ReportDone
			dying := sqlstore.New(s.DB(), &broken, nil)

			dev := storagetest.NewDevice(t)
			dev.Enroll(t, s)
			cmd := storagetest.NewCommand(t, "ProfileList")
			storagetest.Enqueue(t, s, cmd, dev)
			storagetest.WantNext(t, s, dev, false, cmd)

			report := dev.Report(t, status, cmd.CommandUUID)
			if err := dying.StoreCommandReport(dev.Request(), report); err == nil {
				t.Fatal("report through the broken queue update: have no error")
			}
			stored := sqltest.Count(t, s.DB(), "SELECT COUNT(*) FROM nano_command_results WHERE id = ? AND command_uuid = ? AND status = ?",
				dev.ID(), cmd.CommandUUID, status)
			if stored != 1 {
				t.Errorf("result rows after the failed queue update: have %d, want 1 (the result is written first)", stored)
			}
			// Not acknowledged: the command is still the next one.
			storagetest.WantNext(t, s, dev, false, cmd)

			// The device reports again and this time it lands.
			storagetest.StoreReport(t, s, dev, status, cmd.CommandUUID)
			if status == mdm.StatusNotNow {
				storagetest.WantNext(t, s, dev, true, nil)
				storagetest.WantNext(t, s, dev, false, cmd)
			} else {
				storagetest.WantNext(t, s, dev, false, nil)
			}
		})
	}
}

// TestDriverMessagesLogged: what the driver has to say (here, that the
// server dropped an idle connection) reaches the store's logger as a
// structured line instead of unstructured stderr.
func TestDriverMessagesLogged(t *testing.T) {
	dsn := backend.FreshDSN(t)
	rec := sqltest.NewRecorder()
	s := backend.OpenDSN(t, dsn, "max_open_conns=1", sqlstore.WithLogger(rec))
	var connID int64
	if err := s.DB().QueryRow("SELECT CONNECTION_ID()").Scan(&connID); err != nil {
		t.Fatal(err)
	}
	admin, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.Exec(fmt.Sprintf("KILL %d", connID)); err != nil {
		t.Fatalf("killing the store's session: %v", err)
	}
	// The pool finds its idle connection dead, says so, and carries on
	// with a new one.
	deadline := time.Now().Add(5 * time.Second)
	for len(rec.Grep("mysql driver")) == 0 && time.Now().Before(deadline) {
		var one int
		if err := s.DB().QueryRow("SELECT 1").Scan(&one); err != nil {
			t.Logf("query after the kill: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	lines := rec.Grep("mysql driver")
	if len(lines) == 0 {
		t.Fatal("no driver message reached the store's logger after its connection was killed")
	}
	t.Logf("logged: %s", lines[0])
	dev := storagetest.NewDevice(t)
	dev.Enroll(t, s)
}
