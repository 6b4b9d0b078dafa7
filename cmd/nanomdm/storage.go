package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nanomdm/nanomdm/cmd/internal/cli"
	"github.com/nanomdm/nanomdm/log"
	"github.com/nanomdm/nanomdm/storage"
	"github.com/nanomdm/nanomdm/storage/allmulti"
)

// storageName names the storage backends, as the console shows them.
func (c *config) storageName() string {
	if len(c.storage) == 0 {
		return "file"
	}
	return strings.Join(c.storage, " + ")
}

// openStorages opens every -storage triple.
func openStorages(ctx context.Context, c *config, logger log.Logger) (storage.AllStorage, func(), error) {
	names := c.storage
	if len(names) == 0 {
		names = cli.StringList{"file"}
	}
	dsns, err := storageDSNs(c, logger)
	if err != nil {
		return nil, nil, err
	}
	if len(dsns) > len(names) || len(c.storageOptions) > len(names) {
		return nil, nil, fmt.Errorf("%d -storage-dsn and %d -storage-options for %d -storage: give at most one of each per -storage", len(dsns), len(c.storageOptions), len(names))
	}
	at := func(l cli.StringList, i int) string {
		if i < len(l) {
			return l[i]
		}
		return ""
	}
	if len(names) == 1 {
		return cli.OpenStorage(ctx, names[0], at(dsns, 0), at(c.storageOptions, 0), logger.With("storage", names[0]))
	}
	// Multi-storage: the first backend answers, the others get every
	// write and have their errors logged.
	var stores []storage.AllStorage
	var closers []func()
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	for i, name := range names {
		s, closer, err := cli.OpenStorage(ctx, name, at(dsns, i), at(c.storageOptions, i), logger.With("storage", name))
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("storage %d (%s): %w", i+1, name, err)
		}
		stores = append(stores, s)
		closers = append(closers, closer)
	}
	multi, err := allmulti.New(stores, allmulti.WithLogger(logger.With("storage", "allmulti")))
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return multi, closeAll, nil
}

// storageDSNs returns the -storage-dsn values, or those of the deprecated
// -dsn, which it logs; both together are refused.
func storageDSNs(c *config, logger log.Logger) (cli.StringList, error) {
	switch {
	case len(c.dsn) == 0:
		return c.storageDSN, nil
	case len(c.storageDSN) > 0:
		return nil, errors.New("both -dsn and -storage-dsn given (or NANOMDM_DSN and NANOMDM_STORAGE_DSN): -dsn is the deprecated name of -storage-dsn, give only -storage-dsn")
	}
	logger.Info("msg", "-dsn (NANOMDM_DSN) is deprecated: use -storage-dsn (NANOMDM_STORAGE_DSN), which takes the same value")
	return c.dsn, nil
}
