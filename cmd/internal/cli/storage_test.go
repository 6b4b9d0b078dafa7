package cli

import (
	"context"
	"strings"
	"testing"

	"github.com/nanomdm/nanomdm/log"
)

// TestOpenStorageRefuses checks the messages of backends that cannot be
// opened as given: a SQL backend without a DSN names the flag (pgsql
// would otherwise connect to the client library's default database), an
// unknown name lists the valid ones.
func TestOpenStorageRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, backend, dsn string
		want               []string
	}{
		{"pgsql without DSN", "pgsql", "", []string{"pgsql storage needs -storage-dsn", "dbname="}},
		{"mysql without DSN", "mysql", "", []string{"mysql storage needs -storage-dsn", "tcp("}},
		{"unknown backend", "mongo", "", []string{`unknown storage backend "mongo"`, "file, inmem, mysql or pgsql"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _, err := OpenStorage(context.Background(), tc.backend, tc.dsn, "", log.Nop)
			if err == nil {
				t.Fatalf("opened %T, want an error", s)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}
