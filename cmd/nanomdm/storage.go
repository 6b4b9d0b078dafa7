package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/nanomdm/nanomdm/log"
	"github.com/nanomdm/nanomdm/storage"
	"github.com/nanomdm/nanomdm/storage/file"
	"github.com/nanomdm/nanomdm/storage/inmem"
)

// openStorage opens one backend.
func openStorage(ctx context.Context, name, dsn, options string, logger log.Logger) (storage.AllStorage, func(), error) {
	nop := func() {}
	switch name {
	case "file", "":
		if options != "" {
			return nil, nil, fmt.Errorf("file storage takes no options, got %q", options)
		}
		if dsn == "" {
			dsn = "db"
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
	}
	return nil, nil, fmt.Errorf("unknown storage backend %q", name)
}

// openStorages opens every -storage triple.
func openStorages(ctx context.Context, c *config, logger log.Logger) (storage.AllStorage, func(), error) {
	names := c.storage
	if len(names) == 0 {
		names = stringList{"file"}
	}
	if len(c.storageDSN) > len(names) || len(c.storageOptions) > len(names) {
		return nil, nil, errors.New("more -storage-dsn or -storage-options than -storage flags")
	}
	if len(names) > 1 {
		return nil, nil, errors.New("multi-storage is not supported yet")
	}
	at := func(l stringList, i int) string {
		if i < len(l) {
			return l[i]
		}
		return ""
	}
	return openStorage(ctx, names[0], at(c.storageDSN, 0), at(c.storageOptions, 0), logger.With("storage", names[0]))
}
