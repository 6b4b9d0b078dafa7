package sqltest

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/nanomdm/nanomdm/storage/internal/sqlstore"
)

// TestSchema checks schema management: a store refuses a database without
// the schema unless migrate=1, which creates it (once, even with servers
// starting together); upgrades apply in order and are recorded; a newer
// schema is accepted, an older one refused; foreign tables block creation.
// d is the backend's dialect.
func TestSchema(t *testing.T, b *Backend, d *sqlstore.Dialect) {
	ctx := context.Background()
	t.Run("RefusedWithoutMigrate", func(t *testing.T) {
		dsn := b.FreshDSN(t)
		_, err := b.Open(ctx, dsn, "")
		if !errors.Is(err, sqlstore.ErrSchema) {
			t.Fatalf("opening an empty database without migrate: have error %v, want %v", err, sqlstore.ErrSchema)
		}
		if !strings.Contains(err.Error(), "migrate=1") {
			t.Errorf("error %q does not tell how to create the schema", err)
		}
	})

	t.Run("CreateConcurrently", func(t *testing.T) {
		dsn := b.FreshDSN(t)
		var wg sync.WaitGroup
		errs := make([]error, 3)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, err := b.Open(ctx, dsn, "migrate=1")
				if err == nil {
					s.Close()
				}
				errs[i] = err
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("server %d opening with migrate=1: %v", i, err)
			}
		}
		s := b.OpenDSN(t, dsn, "")
		if n := Count(t, s.DB(), "SELECT COUNT(*) FROM "+d.Schema.VersionTable); n != 1 {
			t.Errorf("version rows after three concurrent migrations: have %d, want 1", n)
		}
		v, ok, err := sqlstore.New(s.DB(), d, nil).SchemaVersion(ctx)
		if err != nil || !ok || v != d.Schema.Version {
			t.Errorf("schema version: have %d, %v, %v; want %d", v, ok, err, d.Schema.Version)
		}
		// Opening without migrate works once the schema exists.
		s2, err := b.Open(ctx, dsn, "")
		if err != nil {
			t.Fatalf("opening without migrate after creation: %v", err)
		}
		s2.Close()
	})

	t.Run("Upgrade", func(t *testing.T) {
		dsn := b.FreshDSN(t)
		s := b.OpenDSN(t, dsn, "")
		next := *d
		next.Schema.Version = d.Schema.Version + 1
		probe := b.Table("upgrade_probe")
		next.Schema.Upgrades = append(append([]sqlstore.Upgrade(nil), d.Schema.Upgrades...), sqlstore.Upgrade{
			Version: next.Schema.Version,
			SQL: "-- a later version adds a table; comments; and two statements\n" +
				"CREATE TABLE " + probe + " (id INTEGER NOT NULL PRIMARY KEY);\n" +
				"INSERT INTO " + probe + " (id) VALUES (7);\n",
		})
		older := sqlstore.New(s.DB(), &next, &sqlstore.Config{})
		if err := older.CheckSchema(ctx); !errors.Is(err, sqlstore.ErrSchema) {
			t.Fatalf("checking a version %d schema against version %d: have error %v, want %v",
				d.Schema.Version, next.Schema.Version, err, sqlstore.ErrSchema)
		}
		for i := 0; i < 2; i++ {
			if err := older.Migrate(ctx); err != nil {
				t.Fatalf("upgrading (run %d): %v", i+1, err)
			}
		}
		if err := older.CheckSchema(ctx); err != nil {
			t.Errorf("checking after upgrade: %v", err)
		}
		if n := Count(t, s.DB(), "SELECT COUNT(*) FROM "+probe); n != 1 {
			t.Errorf("rows of the upgrade's table: have %d, want 1 (applied once)", n)
		}
		v, _, err := older.SchemaVersion(ctx)
		if err != nil || v != next.Schema.Version {
			t.Errorf("schema version after upgrade: have %d, %v; want %d", v, err, next.Schema.Version)
		}
		// A server of the previous version still accepts the newer schema.
		if err := sqlstore.New(s.DB(), d, nil).CheckSchema(ctx); err != nil {
			t.Errorf("previous version checking the upgraded schema: %v", err)
		}
	})

	t.Run("ForeignTables", func(t *testing.T) {
		dsn := b.FreshDSN(t)
		db, err := sql.Open(b.DriverName, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.Exec("CREATE TABLE " + b.Table("devices") + " (id VARCHAR(255) NOT NULL PRIMARY KEY)"); err != nil {
			t.Fatalf("creating a foreign table: %v", err)
		}
		_, err = b.Open(ctx, dsn, "migrate=1")
		if !errors.Is(err, sqlstore.ErrSchema) {
			t.Fatalf("migrating a database with tables but no version: have error %v, want %v", err, sqlstore.ErrSchema)
		}
	})
}
