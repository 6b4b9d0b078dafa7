package sqltest

import (
	"database/sql"
	"net/url"
	"testing"

	driver "github.com/go-sql-driver/mysql"
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
	return withSearchPath(base, schema)
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
