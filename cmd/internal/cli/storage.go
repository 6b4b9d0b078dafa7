package cli

import (
	"context"
	"fmt"

	"github.com/nanomdm/nanomdm/log"
	"github.com/nanomdm/nanomdm/storage"
	"github.com/nanomdm/nanomdm/storage/file"
	"github.com/nanomdm/nanomdm/storage/inmem"
	"github.com/nanomdm/nanomdm/storage/mysql"
	"github.com/nanomdm/nanomdm/storage/pgsql"
)

// DefaultFileDSN is the directory of the file backend when no DSN is given.
const DefaultFileDSN = "db"

// OpenStorage opens one backend by the name, DSN and options given on the
// command line ("" names the default, file). The returned function
// releases the backend.
func OpenStorage(ctx context.Context, name, dsn, options string, logger log.Logger) (storage.AllStorage, func(), error) {
	nop := func() {}
	switch name {
	case "file", "":
		if options != "" {
			return nil, nil, fmt.Errorf("file storage takes no options, got %q", options)
		}
		if dsn == "" {
			dsn = DefaultFileDSN
		}
		s, err := file.New(dsn)
		if err != nil {
			return nil, nil, fmt.Errorf("opening file storage %s: %w", dsn, err)
		}
		return s, nop, nil
	case "inmem":
		if options != "" {
			return nil, nil, fmt.Errorf("inmem storage takes no options, got %q", options)
		}
		return inmem.New(), nop, nil
	case "mysql":
		if dsn == "" {
			return nil, nil, noDSN(name, "nanomdm:PASSWORD@tcp(127.0.0.1:3306)/nanomdm")
		}
		s, err := mysql.New(ctx, dsn, options, mysql.WithLogger(logger))
		if err != nil {
			return nil, nil, fmt.Errorf("opening mysql storage: %w", err)
		}
		return s, func() { s.Close() }, nil
	case "pgsql":
		if dsn == "" {
			// lib/pq would connect to a default database, where migrate=1
			// would create the schema.
			return nil, nil, noDSN(name, "host=127.0.0.1 dbname=nanomdm user=nanomdm sslmode=disable")
		}
		s, err := pgsql.New(ctx, dsn, options, pgsql.WithLogger(logger))
		if err != nil {
			return nil, nil, fmt.Errorf("opening pgsql storage: %w", err)
		}
		return s, func() { s.Close() }, nil
	}
	return nil, nil, fmt.Errorf("unknown storage backend %q: want file, inmem, mysql or pgsql", name)
}

// noDSN is the complaint about a SQL backend given no DSN.
func noDSN(name, example string) error {
	return fmt.Errorf("%s storage needs -storage-dsn naming its database, e.g. -storage-dsn '%s'", name, example)
}
