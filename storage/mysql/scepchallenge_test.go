package mysql

import (
	"testing"

	"github.com/nanomdm/nanomdm/storage/internal/sqlstore/sqltest"
)

// TestUpgradeToSCEPChallenges: a version 2 database gets the challenge
// table of version 3 with migrate=1 (schema.sql records only its own
// version, so the downgrade records 2).
func TestUpgradeToSCEPChallenges(t *testing.T) {
	sqltest.TestUpgrade(t, backend, dialect, 2,
		[]string{"DROP TABLE nano_outbox", "DROP TABLE nano_scep_challenges", "INSERT INTO nano_schema_version (version) VALUES (2)"},
		`SELECT COUNT(*) FROM information_schema.tables
		 WHERE table_schema = DATABASE() AND table_name = 'nano_scep_challenges'`, 1)
}

// TestUpgradeToOutbox: a version 3 database gets the outbox table of
// version 4 with migrate=1.
func TestUpgradeToOutbox(t *testing.T) {
	sqltest.TestUpgrade(t, backend, dialect, 3,
		[]string{"DROP TABLE nano_outbox", "INSERT INTO nano_schema_version (version) VALUES (3)"},
		`SELECT COUNT(*) FROM information_schema.tables
		 WHERE table_schema = DATABASE() AND table_name = 'nano_outbox'`, 1)
}
