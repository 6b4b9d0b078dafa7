package sqltest

import (
	"context"
	"database/sql"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/storage"
	"github.com/nanomdm/nanomdm/storage/internal/sqlstore"
	"github.com/nanomdm/nanomdm/storage/storagetest"
)

// Plans tells TestInspectionAtScale what a good query plan of a backend
// looks like. EXPLAIN output is read as lines of "column=value" pairs.
type Plans struct {
	// Enrollments must appear in the plan of an enrollments page, and
	// Results in that of a command-results page (index names or the
	// like).
	Enrollments []string
	Results     []string
	// Bad must appear in neither (full scans, sorts).
	Bad []string
}

// ScaleSize is the fleet of TestInspectionAtScale: 100,000 enrollments,
// or 10,000 with -short.
func ScaleSize() int {
	if testing.Short() {
		return 10_000
	}
	return 100_000
}

// seedRows inserts rows into table in multi-row statements of at most
// perStatement rows; each row is one []any of the columns.
func seedRows(t testing.TB, b *Backend, db *sql.DB, table string, columns []string, rows [][]any, perStatement int) {
	t.Helper()
	for len(rows) > 0 {
		n := min(len(rows), perStatement)
		var q strings.Builder
		fmt.Fprintf(&q, "INSERT INTO %s (%s) VALUES ", b.Table(table), strings.Join(columns, ", "))
		args := make([]any, 0, n*len(columns))
		for i, row := range rows[:n] {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteByte('(')
			for j, v := range row {
				if j > 0 {
					q.WriteString(", ")
				}
				args = append(args, v)
				q.WriteString(b.Placeholder(len(args)))
			}
			q.WriteByte(')')
		}
		if _, err := db.Exec(q.String(), args...); err != nil {
			t.Fatalf("seeding %s: %v", table, err)
		}
		rows = rows[n:]
	}
}

// pageStats summarises the time and allocation of each page.
type pageStats struct {
	times  []time.Duration
	allocs []uint64
}

func (p *pageStats) add(d time.Duration, alloc uint64) {
	p.times = append(p.times, d)
	p.allocs = append(p.allocs, alloc)
}

func (p *pageStats) String() string {
	ts := slices.Clone(p.times)
	slices.Sort(ts)
	q := func(f float64) time.Duration { return ts[int(f*float64(len(ts)-1))] }
	var total time.Duration
	for _, d := range ts {
		total += d
	}
	return fmt.Sprintf("%d pages in %v: per page min %v, median %v, p95 %v, max %v",
		len(ts), total.Round(time.Millisecond), q(0).Round(time.Microsecond), q(0.5).Round(time.Microsecond),
		q(0.95).Round(time.Microsecond), q(1).Round(time.Microsecond))
}

// checkBounded fails unless the pages at the end allocated about as much
// as those at the start: the work of a page does not grow with its
// offset (nothing before the cursor is read or kept).
func (p *pageStats) checkBounded(t *testing.T, what string) {
	t.Helper()
	n := min(10, len(p.allocs)/2)
	if n == 0 {
		return
	}
	var first, last uint64
	for i := 0; i < n; i++ {
		first += p.allocs[i]
		last += p.allocs[len(p.allocs)-1-i]
	}
	first, last = first/uint64(n), last/uint64(n)
	t.Logf("%s: %d KiB allocated per page at the start, %d KiB at the end", what, first>>10, last>>10)
	if last > 2*first+64<<10 {
		t.Errorf("%s: late pages allocate %d bytes each, early ones %d: memory grows with the offset", what, last, first)
	}
}

// allocated returns the bytes allocated by the process so far.
func allocated() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.TotalAlloc
}

// TestInspectionAtScale seeds ScaleSize() enrollments (devices with
// serial numbers, every tenth with a user channel) and one command
// answered by all of them with bulk inserts, then pages through both
// listings of the inspection API with a limit of 1000: every row comes
// once, in order; the time per page is logged; allocation per page stays
// flat; and the plans of the page queries use the indexes plans names.
func TestInspectionAtScale(t *testing.T, b *Backend, d *sqlstore.Dialect, plans Plans) {
	const limit = 1000
	ctx := context.Background()
	store := b.OpenFresh(t, "")
	db := store.DB()
	s, ok := store.(storage.InspectionStore)
	if !ok {
		t.Fatalf("%T does not implement storage.InspectionStore", store)
	}
	n := ScaleSize()

	start := time.Now()
	var devices, enrollments, queue, results [][]any
	cmd := storagetest.NewCommand(t, "DeviceInformation")
	report := []byte(`<?xml version="1.0" encoding="UTF-8"?><plist version="1.0"><dict><key>Status</key><string>Acknowledged</string></dict></plist>`)
	var want []string
	for len(want) < n {
		dev := storagetest.RandomUUID()
		devices = append(devices, []any{dev, fmt.Sprintf("SER%07d", len(devices))})
		chans := []string{dev}
		if len(devices)%10 == 0 {
			chans = append(chans, dev+":"+storagetest.RandomUUID())
		}
		for _, id := range chans {
			if len(want) == n {
				break
			}
			typ := "Device"
			if id != dev {
				typ = "User"
			}
			enrollments = append(enrollments, []any{id, dev, typ, "com.apple.mgmt.External.scale", "magic", "abcdef"})
			queue = append(queue, []any{id, cmd.CommandUUID})
			results = append(results, []any{id, cmd.CommandUUID, "Acknowledged", report})
			want = append(want, id)
		}
	}
	slices.Sort(want)
	seedRows(t, b, db, "devices", []string{"id", "serial_number"}, devices, 5000)
	seedRows(t, b, db, "enrollments", []string{"id", "device_id", "type", "topic", "push_magic", "token_hex"}, enrollments, 5000)
	seedRows(t, b, db, "commands", []string{"command_uuid", "request_type", "command"}, [][]any{{cmd.CommandUUID, "DeviceInformation", []byte(cmd.Raw)}}, 1)
	seedRows(t, b, db, "enrollment_queue", []string{"id", "command_uuid"}, queue, 5000)
	seedRows(t, b, db, "command_results", []string{"id", "command_uuid", "status", "result"}, results, 5000)
	for _, table := range []string{"devices", "enrollments", "enrollment_queue", "command_results"} {
		analyze := "ANALYZE " + b.Table(table)
		if !b.NumberedPlaceholders {
			analyze = "ANALYZE TABLE " + b.Table(table)
		}
		if _, err := db.Exec(analyze); err != nil {
			t.Fatalf("%s: %v", analyze, err)
		}
	}
	t.Logf("seeded %d enrollments of %d devices, a command and %d results in %v", n, len(devices), n, time.Since(start).Round(time.Millisecond))

	// Enrollments, page by page.
	var stats pageStats
	var have []string
	cursor := ""
	for {
		before, t0 := allocated(), time.Now()
		page, err := s.RetrieveEnrollments(ctx, &storage.EnrollmentQuery{After: cursor, Limit: limit})
		stats.add(time.Since(t0), allocated()-before)
		if err != nil {
			t.Fatalf("page after %q: %v", cursor, err)
		}
		for _, e := range page {
			have = append(have, e.ID)
		}
		if len(page) < limit {
			break
		}
		cursor = page[len(page)-1].ID
	}
	if !slices.Equal(have, want) {
		t.Errorf("paging through %d enrollments returned %d, in order: %v", len(want), len(have), slices.IsSorted(have))
	}
	t.Logf("enrollments, limit %d: %v", limit, stats.String())
	stats.checkBounded(t, "enrollments")

	// A serial-number filter finds its device and user channel at once.
	dev := devices[len(devices)/2]
	t0 := time.Now()
	found, err := s.RetrieveEnrollments(ctx, &storage.EnrollmentQuery{SerialNumber: dev[1].(string)})
	if err != nil || len(found) == 0 || found[0].ID != dev[0] {
		t.Errorf("by serial number %s: have %v, %v; want device %s first", dev[1], found, err, dev[0])
	}
	t.Logf("by serial number: %d enrollments in %v", len(found), time.Since(t0).Round(time.Microsecond))

	// The command's results, page by page, statuses only.
	stats = pageStats{}
	have = have[:0]
	cursor = ""
	for {
		before, t0 := allocated(), time.Now()
		page, err := s.RetrieveCommandResults(ctx, cmd.CommandUUID, cursor, limit, true)
		stats.add(time.Since(t0), allocated()-before)
		if err != nil {
			t.Fatalf("results after %q: %v", cursor, err)
		}
		for _, r := range page {
			have = append(have, r.ID)
			if r.Status != mdm.StatusAcknowledged {
				t.Fatalf("result of %s: status %q", r.ID, r.Status)
			}
		}
		if len(page) < limit {
			break
		}
		cursor = page[len(page)-1].ID
	}
	if !slices.Equal(have, want) {
		t.Errorf("paging through %d results returned %d", len(want), len(have))
	}
	t.Logf("command results, limit %d: %v", limit, stats.String())
	stats.checkBounded(t, "command results")

	// The plans, at a cursor deep into the table.
	deep := want[len(want)*9/10]
	explain := func(what, text string, args sqlstore.Args, wants []string) {
		t.Helper()
		query, vals, err := d.Render(text, args)
		if err != nil {
			t.Fatalf("rendering %s: %v", what, err)
		}
		plan := Explain(t, db, query, vals...)
		t.Logf("plan of %s:\n%s", what, plan)
		for _, w := range wants {
			if !strings.Contains(plan, w) {
				t.Errorf("plan of %s does not use %q", what, w)
			}
		}
		for _, bad := range plans.Bad {
			if strings.Contains(plan, bad) {
				t.Errorf("plan of %s has %q", what, bad)
			}
		}
	}
	explain("an enrollments page", d.Queries.SelectEnrollments, sqlstore.Args{
		"after": deep, "limit": limit, "serial": "", "type": "", "enabled": -1, "before_us": int64(0), "after_us": int64(0),
	}, plans.Enrollments)
	explain("a command-results page", d.Queries.SelectCommandStatuses, sqlstore.Args{
		"uuid": cmd.CommandUUID, "after": deep, "limit": limit,
	}, plans.Results)
}

// Explain returns the EXPLAIN output of query as lines of column=value.
func Explain(t testing.TB, db *sql.DB, query string, args ...any) string {
	t.Helper()
	rows, err := db.Query("EXPLAIN "+query, args...)
	if err != nil {
		t.Fatalf("explain: %v", err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
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
		for i, c := range cols {
			line = append(line, c+"="+vals[i].String)
		}
		lines = append(lines, strings.Join(line, " "))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

// TestUpgrade checks one schema upgrade on a real database: the current
// schema is created, taken back to version from by the downgrade
// statements (and its version record), and opening with migrate=1 must
// bring it to the current version, after which check (a COUNT query)
// must answer want.
func TestUpgrade(t *testing.T, b *Backend, d *sqlstore.Dialect, from int, downgrade []string, check string, want int) {
	ctx := context.Background()
	dsn := b.FreshDSN(t)
	s := b.OpenDSN(t, dsn, "")
	db := s.DB()
	for _, st := range append(downgrade, fmt.Sprintf("DELETE FROM %s WHERE version > %d", d.Schema.VersionTable, from)) {
		if _, err := db.Exec(st); err != nil {
			t.Fatalf("%s: %v", st, err)
		}
	}
	if n := Count(t, db, check); n == want {
		t.Fatalf("after the downgrade %s already answers %d", check, n)
	}
	if _, err := b.Open(ctx, dsn, ""); err == nil {
		t.Fatalf("a version %d schema opened without migrate=1", from)
	}
	s2 := b.OpenDSN(t, dsn, "")
	if v, _, err := sqlstore.New(s2.DB(), d, nil).SchemaVersion(ctx); err != nil || v != d.Schema.Version {
		t.Errorf("version after upgrading from %d: have %d, %v; want %d", from, v, err, d.Schema.Version)
	}
	if n := Count(t, db, check); n != want {
		t.Errorf("after upgrading from %d: %s answers %d, want %d", from, check, n, want)
	}
}
