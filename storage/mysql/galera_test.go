package mysql

import (
	"testing"
)

// TestGaleraSchemaRules checks that the schema meets what MariaDB Galera
// Cluster replicates safely: every table InnoDB and with a primary key
// (rows without one cannot be matched on the other nodes). The Galera
// cluster of the process tests (cmd/nanomdm TestGalera, .ci/galera.sh)
// also refuses other tables (wsrep_mode=REQUIRED_PRIMARY_KEY,
// STRICT_REPLICATION); this test holds on any MySQL or MariaDB server.
func TestGaleraSchemaRules(t *testing.T) {
	s := backend.OpenFresh(t, "")
	rows, err := s.DB().Query(`
SELECT t.table_name, t.engine,
       (SELECT count(*) FROM information_schema.table_constraints c
        WHERE c.table_schema = t.table_schema AND c.table_name = t.table_name
          AND c.constraint_type = 'PRIMARY KEY')
FROM information_schema.tables t
WHERE t.table_schema = DATABASE() AND t.table_type = 'BASE TABLE'`)
	if err != nil {
		t.Fatalf("listing tables: %v", err)
	}
	defer rows.Close()
	seen := map[string]bool{}
	for rows.Next() {
		var name, engine string
		var pks int
		if err := rows.Scan(&name, &engine, &pks); err != nil {
			t.Fatal(err)
		}
		seen[name] = true
		if engine != "InnoDB" {
			t.Errorf("table %s: engine %s, want InnoDB", name, engine)
		}
		if pks != 1 {
			t.Errorf("table %s has no primary key", name)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for _, name := range dialect.Schema.Tables {
		if !seen[name] {
			t.Errorf("table %s of the dialect's list not found in the created schema", name)
		}
	}
	if len(seen) < len(dialect.Schema.Tables) {
		t.Errorf("have %d tables, want at least the dialect's %d", len(seen), len(dialect.Schema.Tables))
	}
}
