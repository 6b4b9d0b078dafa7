// Package sqltest holds the tests every SQL backend runs against a real
// server, written once: the contract suite, schema creation, round trips
// per device request, pool sizing, a 100,000-ID enqueue and two server
// instances sharing one database. A backend's test file describes itself
// with a Backend and calls these.
package sqltest

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/storage"
	"github.com/nanomdm/nanomdm/storage/internal/sqlstore"
	"github.com/nanomdm/nanomdm/storage/storagetest"
)

// Store is what a SQL backend's constructor returns.
type Store interface {
	storage.AllStorage
	DB() *sql.DB
	Close() error
}

// Backend describes one SQL backend to the tests.
type Backend struct {
	// Name is the -storage name ("mysql", "pgsql").
	Name string
	// EnvVar holds the DSN of the test server's database.
	EnvVar string
	// DriverName is the database/sql driver for administrative access.
	DriverName string
	// TablePrefix starts every table name ("nano_" for MySQL).
	TablePrefix string
	// NumberedPlaceholders selects $n instead of ?.
	NumberedPlaceholders bool
	// Isolate creates an empty schema or database next to the one of
	// base and returns a DSN for it; it is dropped when t ends.
	Isolate func(t testing.TB, admin *sql.DB, base string) string
	// Open opens the backend.
	Open func(ctx context.Context, dsn, options string, opts ...sqlstore.Option) (Store, error)
}

// DSN returns the backend's test DSN, skipping t when it is not set.
func (b *Backend) DSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(b.EnvVar)
	if dsn == "" {
		t.Skipf("%s not set: no %s server to test against (eval \"$(bash .ci/sqldb.sh)\" sets it)", b.EnvVar, b.Name)
	}
	return dsn
}

// FreshDSN returns a DSN of a new, empty schema or database of its own.
func (b *Backend) FreshDSN(t testing.TB) string {
	t.Helper()
	base := b.DSN(t)
	admin, err := sql.Open(b.DriverName, base)
	if err != nil {
		t.Fatalf("opening %s admin connection: %v", b.Name, err)
	}
	t.Cleanup(func() { admin.Close() })
	return b.Isolate(t, admin, base)
}

// OpenFresh opens the backend on a fresh schema, created with migrate=1,
// and closes it when t ends. options are added to migrate=1.
func (b *Backend) OpenFresh(t testing.TB, options string, opts ...sqlstore.Option) Store {
	t.Helper()
	return b.OpenDSN(t, b.FreshDSN(t), options, opts...)
}

// OpenDSN opens the backend on dsn with migrate=1 plus options and closes
// it when t ends.
func (b *Backend) OpenDSN(t testing.TB, dsn, options string, opts ...sqlstore.Option) Store {
	t.Helper()
	all := "migrate=1"
	if options != "" {
		all += "," + options
	}
	s, err := b.Open(context.Background(), dsn, all, opts...)
	if err != nil {
		t.Fatalf("opening %s store: %v", b.Name, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Table returns the backend's name for a seed table name.
func (b *Backend) Table(name string) string { return b.TablePrefix + name }

// Placeholder returns the n-th (1-based) placeholder.
func (b *Backend) Placeholder(n int) string {
	if b.NumberedPlaceholders {
		return fmt.Sprintf("$%d", n)
	}
	return "?"
}

// Strings returns the one text column of every row of query.
func Strings(t testing.TB, db *sql.DB, query string, args ...any) []string {
	t.Helper()
	rows, err := db.Query(query, args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return out
}

// Count returns the result of a COUNT query on s's database.
func Count(t testing.TB, db *sql.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// RunContract runs the shared contract suite on one fresh schema; every
// subtest shares the store (the suite keeps its IDs apart).
func RunContract(t *testing.T, b *Backend, options string) {
	s := b.OpenFresh(t, options)
	storagetest.RunWith(t, func(t *testing.T) storage.AllStorage { return s },
		storagetest.Options{DiscardsResults: strings.Contains(options, "delete=1")})
}

// Counter counts the connections it dials and the round trips made on
// them. A round trip starts whenever the client writes after having read
// (or writes first): pipelined writes count once, as the network sees it.
type Counter struct {
	dials      atomic.Int64
	roundTrips atomic.Int64
}

// Dial opens a counted TCP connection.
func (c *Counter) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	c.dials.Add(1)
	return &countingConn{Conn: conn, c: c, replied: true}, nil
}

// Dials returns the connections opened so far.
func (c *Counter) Dials() int64 { return c.dials.Load() }

// RoundTrips returns the round trips made so far.
func (c *Counter) RoundTrips() int64 { return c.roundTrips.Load() }

type countingConn struct {
	net.Conn
	c       *Counter
	mu      sync.Mutex
	replied bool // the server has sent something since our last write
}

func (cc *countingConn) Write(p []byte) (int, error) {
	cc.mu.Lock()
	if cc.replied && len(p) > 0 {
		cc.c.roundTrips.Add(1)
		cc.replied = false
	}
	cc.mu.Unlock()
	return cc.Conn.Write(p)
}

func (cc *countingConn) Read(p []byte) (int, error) {
	n, err := cc.Conn.Read(p)
	if n > 0 {
		cc.mu.Lock()
		cc.replied = true
		cc.mu.Unlock()
	}
	return n, err
}

// SeedEnrollments inserts enabled device enrollments for ids straight
// into the tables, for tests that need more devices than check-ins could
// create quickly.
func SeedEnrollments(t testing.TB, b *Backend, db *sql.DB, ids []string) {
	t.Helper()
	const perStatement = 1000
	for len(ids) > 0 {
		n := min(len(ids), perStatement)
		batch := ids[:n]
		ids = ids[n:]
		var q strings.Builder
		fmt.Fprintf(&q, "INSERT INTO %s (id, device_id, type, topic, push_magic, token_hex) VALUES ", b.Table("enrollments"))
		args := make([]any, 0, 2*n)
		for i, id := range batch {
			if i > 0 {
				q.WriteString(", ")
			}
			fmt.Fprintf(&q, "(%s, %s, 'Device', 'com.apple.mgmt.External.seed', 'magic', 'abcdef')",
				b.Placeholder(len(args)+1), b.Placeholder(len(args)+2))
			args = append(args, id, id)
		}
		if _, err := db.Exec(q.String(), args...); err != nil {
			t.Fatalf("seeding enrollments: %v", err)
		}
	}
}

// timed runs f and returns how long it took.
func timed(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}
