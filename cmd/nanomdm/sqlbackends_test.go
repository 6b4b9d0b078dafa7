package main

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"testing"

	mysqldriver "github.com/go-sql-driver/mysql"
)

// The SQL backends for the end-to-end tests of this package. Each call of
// flags makes a fresh schema (PostgreSQL) or database (MySQL/MariaDB) next
// to the one named by NANOMDM_TEST_PGSQL_DSN or NANOMDM_TEST_MYSQL_DSN,
// dropped when the test ends, and lets the server create its tables with
// migrate=1. Without the variable the test is skipped (CI sets both, and
// fails on skips: eval "$(bash .ci/sqldb.sh)").
var (
	pgsqlBackend = backend{"pgsql", func(t *testing.T) []string {
		return []string{"-storage", "pgsql", "-storage-dsn", freshPgSQL(t), "-storage-options", "migrate=1"}
	}}
	mysqlBackend = backend{"mysql", func(t *testing.T) []string {
		return []string{"-storage", "mysql", "-storage-dsn", freshMySQL(t), "-storage-options", "migrate=1"}
	}}
)

// allBackends is every storage backend, for tests that must hold on each.
var allBackends = []backend{fileBackend, inmemBackend, pgsqlBackend, mysqlBackend}

// sqlTestDSN returns the DSN in the environment variable env, skipping t
// when it is unset.
func sqlTestDSN(t *testing.T, env string) string {
	t.Helper()
	dsn := os.Getenv(env)
	if dsn == "" {
		t.Skipf("%s not set: no database to test against (eval \"$(bash .ci/sqldb.sh)\" sets it)", env)
	}
	return dsn
}

func randomSuffix(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("reading random bytes: %v", err)
	}
	return hex.EncodeToString(b)
}

// freshPgSQL creates a schema of its own and returns a DSN that uses it.
func freshPgSQL(t *testing.T) string {
	t.Helper()
	base := sqlTestDSN(t, "NANOMDM_TEST_PGSQL_DSN")
	admin, err := sql.Open("postgres", base)
	if err != nil {
		t.Fatalf("opening PostgreSQL: %v", err)
	}
	schema := "nanomdm_e2e_" + randomSuffix(t)
	if _, err := admin.Exec("CREATE SCHEMA " + schema); err != nil {
		admin.Close()
		t.Fatalf("creating schema: %v", err)
	}
	t.Cleanup(func() {
		defer admin.Close()
		if _, err := admin.Exec("DROP SCHEMA " + schema + " CASCADE"); err != nil {
			t.Errorf("dropping schema %s: %v", schema, err)
		}
	})
	return withSearchPath(base, schema)
}

// freshMySQL creates a database of its own and returns a DSN naming it.
func freshMySQL(t *testing.T) string {
	t.Helper()
	base := sqlTestDSN(t, "NANOMDM_TEST_MYSQL_DSN")
	cfg, err := mysqldriver.ParseDSN(base)
	if err != nil {
		t.Fatalf("parsing MySQL DSN: %v", err)
	}
	admin, err := sql.Open("mysql", base)
	if err != nil {
		t.Fatalf("opening MySQL: %v", err)
	}
	cfg.DBName = cfg.DBName + "_e2e_" + randomSuffix(t)
	if _, err := admin.Exec("CREATE DATABASE `" + cfg.DBName + "`"); err != nil {
		admin.Close()
		t.Fatalf("creating database: %v", err)
	}
	t.Cleanup(func() {
		defer admin.Close()
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
