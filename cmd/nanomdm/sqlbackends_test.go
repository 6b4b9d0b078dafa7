package main

import (
	"database/sql"
	"os"
	"testing"

	"github.com/nanomdm/nanomdm/storage/storagetest/sqldb"
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
func sqlTestDSN(t testing.TB, env string) string {
	t.Helper()
	dsn := os.Getenv(env)
	if dsn == "" {
		t.Skipf("%s not set: no database to test against (eval \"$(bash .ci/sqldb.sh)\" sets it)", env)
	}
	return dsn
}

// freshPgSQL creates a schema of its own and returns a DSN that uses it.
func freshPgSQL(t testing.TB) string {
	t.Helper()
	base := sqlTestDSN(t, "NANOMDM_TEST_PGSQL_DSN")
	return sqldb.PgSQLSchema(t, openAdmin(t, "postgres", base), base)
}

// freshMySQL creates a database of its own and returns a DSN naming it.
func freshMySQL(t *testing.T) string {
	t.Helper()
	base := sqlTestDSN(t, "NANOMDM_TEST_MYSQL_DSN")
	return sqldb.MySQLDatabase(t, openAdmin(t, "mysql", base), base)
}

// openAdmin opens the connection that creates and drops a test's own
// schema or database; it closes after the drop (cleanups run last first).
func openAdmin(t testing.TB, driver, dsn string) *sql.DB {
	t.Helper()
	admin, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatalf("opening %s: %v", driver, err)
	}
	t.Cleanup(func() { admin.Close() })
	return admin
}
