package sqltest

import (
	"database/sql"
	"strings"
	"testing"

	driver "github.com/go-sql-driver/mysql"
	"github.com/lib/pq"
)

// PgSQLSchema is a Backend.Isolate for PostgreSQL: a new schema in the
// database of base, reached through search_path.
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
	if strings.HasPrefix(base, "postgres://") || strings.HasPrefix(base, "postgresql://") {
		conv, err := pq.ParseURL(base)
		if err != nil {
			t.Fatalf("parsing PostgreSQL URL: %v", err)
		}
		base = conv
	}
	return base + " search_path=" + schema
}

// MySQLDatabase is a Backend.Isolate for MySQL: a new database named
// after the one of base, on the same server.
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
