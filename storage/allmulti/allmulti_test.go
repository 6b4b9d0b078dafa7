package allmulti

import (
	"context"
	"errors"
	"testing"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/storage"
	"github.com/nanomdm/nanomdm/storage/file"
	"github.com/nanomdm/nanomdm/storage/inmem"
	"github.com/nanomdm/nanomdm/storage/internal/sqlstore"
	"github.com/nanomdm/nanomdm/storage/internal/sqlstore/sqltest"
	"github.com/nanomdm/nanomdm/storage/pgsql"
	"github.com/nanomdm/nanomdm/storage/storagetest"
	"github.com/nanomdm/nanomdm/storage/storagetest/sqldb"
)

var pgBackend = &sqltest.Backend{
	Name:                 "pgsql",
	EnvVar:               "NANOMDM_TEST_PGSQL_DSN",
	DriverName:           "postgres",
	NumberedPlaceholders: true,
	Isolate:              sqldb.PgSQLSchema,
	Open: func(ctx context.Context, dsn, options string, opts ...sqlstore.Option) (sqltest.Store, error) {
		return pgsql.New(ctx, dsn, options, opts...)
	},
}

func newFile(t testing.TB) storage.AllStorage {
	t.Helper()
	s, err := file.New(t.TempDir())
	if err != nil {
		t.Fatalf("opening file storage: %v", err)
	}
	return s
}

func newMulti(t testing.TB, stores ...storage.AllStorage) *Storage {
	t.Helper()
	s, err := New(stores, WithLogger(sqltest.NewRecorder()))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestContractFilePgSQL runs the contract suite on file storage answering
// with PostgreSQL beside it, then the other way round: either backend may
// be the first.
func TestContractFilePgSQL(t *testing.T) {
	pg := pgBackend.OpenFresh(t, "")
	t.Run("FileFirst", func(t *testing.T) {
		storagetest.Run(t, func(t *testing.T) storage.AllStorage { return newMulti(t, newFile(t), pg) })
	})
	t.Run("PgSQLFirst", func(t *testing.T) {
		storagetest.Run(t, func(t *testing.T) storage.AllStorage { return newMulti(t, pg, newFile(t)) })
	})
}

func TestContractInmemFile(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.AllStorage { return newMulti(t, inmem.New(), newFile(t)) })
}

// broken is a backend whose writes all fail.
type broken struct{ storage.AllStorage }

var errBroken = errors.New("broken backend")

func (broken) StoreAuthenticate(*mdm.Request, *mdm.Authenticate) error { return errBroken }
func (broken) StoreTokenUpdate(*mdm.Request, *mdm.TokenUpdate) error   { return errBroken }
func (broken) EnqueueCommand(context.Context, []string, *mdm.Command) (map[string]error, error) {
	return nil, errBroken
}

func TestSecondaryErrorsLogged(t *testing.T) {
	first, second := inmem.New(), inmem.New()
	logs := sqltest.NewRecorder()
	s, err := New([]storage.AllStorage{first, broken{second}, second}, WithLogger(logs))
	if err != nil {
		t.Fatal(err)
	}
	dev := storagetest.NewDevice(t)
	dev.Enroll(t, s)
	cmd := storagetest.NewCommand(t, "DeviceInformation")
	storagetest.Enqueue(t, s, cmd, dev)
	// Both working backends got every write; the answers are the first's.
	for i, b := range []storage.AllStorage{first, second} {
		storagetest.WantNext(t, b, dev, false, cmd)
		if n, err := b.RetrieveTokenUpdateTally(context.Background(), dev.ID()); n != 1 || err != nil {
			t.Errorf("backend %d tally: have %d, %v; want 1", i, n, err)
		}
	}
	storagetest.WantNext(t, s, dev, false, cmd)
	for _, method := range []string{"StoreAuthenticate", "StoreTokenUpdate", "EnqueueCommand"} {
		if lines := logs.Grep("secondary storage failed", method, "storage_index=\"1\"", errBroken.Error()); len(lines) != 1 {
			t.Errorf("log lines for the broken backend's %s: have %q, want one", method, lines)
		}
	}
	// Reads come from the first backend only.
	other := storagetest.NewCommand(t, "ProfileList")
	storagetest.Enqueue(t, second, other, dev)
	storagetest.StoreReport(t, s, dev, mdm.StatusAcknowledged, cmd.CommandUUID)
	storagetest.WantNext(t, s, dev, false, nil)
	// A per-ID failure only the second backend has is logged.
	ids := []string{dev.ID()}
	if err := first.StoreAuthenticate(dev.Request(), dev.Authenticate(t)); err != nil {
		t.Fatal(err)
	}
	if err := first.StoreTokenUpdate(dev.Request(), dev.TokenUpdate(t)); err != nil {
		t.Fatal(err)
	}
	fresh := storagetest.NewDevice(t)
	if err := first.StoreAuthenticate(fresh.Request(), fresh.Authenticate(t)); err != nil {
		t.Fatal(err)
	}
	if err := first.StoreTokenUpdate(fresh.Request(), fresh.TokenUpdate(t)); err != nil {
		t.Fatal(err)
	}
	ids = append(ids, fresh.ID())
	pair, err := New([]storage.AllStorage{first, second}, WithLogger(logs))
	if err != nil {
		t.Fatal(err)
	}
	idErrs, err := pair.EnqueueCommand(context.Background(), ids, storagetest.NewCommand(t, "SecurityInfo"))
	if err != nil || len(idErrs) != 0 {
		t.Fatalf("enqueue: have %v, %v; want the first backend's success", idErrs, err)
	}
	if lines := logs.Grep("EnqueueCommand", "1 IDs failed only here", fresh.ID()); len(lines) != 1 {
		t.Errorf("log lines for the second backend's unknown ID: have %q, want one", lines)
	}
}

func TestNewWithoutBackends(t *testing.T) {
	if _, err := New(nil); err == nil {
		t.Error("New with no backends: have no error")
	}
}
