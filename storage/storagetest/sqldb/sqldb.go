// Package sqldb gives each SQL test a database of its own next to the one
// the test environment names (see .ci/sqldb.sh), dropped when the test
// ends: a schema on PostgreSQL, a database on MySQL/MariaDB.
package sqldb

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"testing"

	driver "github.com/go-sql-driver/mysql"
)

// PgSQLSchema creates a new schema in the database of base, reached
// through search_path, and returns a DSN that uses it.
func PgSQLSchema(t testing.TB, admin *sql.DB, base string) string {
	t.Helper()
	schema := RandomName("nanomdm_t_")
	if _, err := admin.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatalf("creating schema: %v", err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec("DROP SCHEMA " + schema + " CASCADE"); err != nil {
			t.Errorf("dropping schema %s: %v", schema, err)
		}
	})
	return withSearchPath(base, schema)
}

// MySQLDatabase creates a new database named after the one of base, on
// the same server, and returns a DSN naming it.
func MySQLDatabase(t testing.TB, admin *sql.DB, base string) string {
	t.Helper()
	cfg, err := driver.ParseDSN(base)
	if err != nil {
		t.Fatalf("parsing MySQL DSN: %v", err)
	}
	cfg.DBName = RandomName(cfg.DBName + "_")
	if _, err := admin.Exec("CREATE DATABASE `" + cfg.DBName + "`"); err != nil {
		t.Fatalf("creating database: %v", err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec("DROP DATABASE `" + cfg.DBName + "`"); err != nil {
			t.Errorf("dropping database %s: %v", cfg.DBName, err)
		}
	})
	return cfg.FormatDSN()
}

// withSearchPath adds search_path to a PostgreSQL DSN in URL or
// key=value form.
func withSearchPath(dsn, schema string) string {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return dsn + " search_path=" + schema
}

// RandomName returns a short random lower-case name for schemas and
// databases.
func RandomName(prefix string) string {
	var b [5]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}
