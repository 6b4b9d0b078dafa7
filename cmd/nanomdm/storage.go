package main

import (
	"context"
	"errors"

	"github.com/nanomdm/nanomdm/cmd/internal/cli"
	"github.com/nanomdm/nanomdm/log"
	"github.com/nanomdm/nanomdm/storage"
)

// openStorages opens every -storage triple.
func openStorages(ctx context.Context, c *config, logger log.Logger) (storage.AllStorage, func(), error) {
	names := c.storage
	if len(names) == 0 {
		names = cli.StringList{"file"}
	}
	if len(c.storageDSN) > len(names) || len(c.storageOptions) > len(names) {
		return nil, nil, errors.New("more -storage-dsn or -storage-options than -storage flags")
	}
	if len(names) > 1 {
		return nil, nil, errors.New("multi-storage is not supported yet")
	}
	at := func(l cli.StringList, i int) string {
		if i < len(l) {
			return l[i]
		}
		return ""
	}
	return cli.OpenStorage(ctx, names[0], at(c.storageDSN, 0), at(c.storageOptions, 0), logger.With("storage", names[0]))
}
