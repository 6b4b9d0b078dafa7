// Package pgsql is the PostgreSQL storage backend (lib/pq). It keeps only
// what is PostgreSQL's own: the SQL text, the placeholder style, the error
// codes and the embedded schema.sql; the storage logic is shared with the
// MySQL backend.
package pgsql

import (
	"context"
	"database/sql"
	_ "embed"
	"fmt"
	"net"
	"time"

	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"

	"github.com/nanomdm/nanomdm/log"
	"github.com/nanomdm/nanomdm/storage/internal/sqlstore"
)

//go:embed schema.sql
var schemaSQL string

// SchemaVersion is the version schema.sql creates.
const SchemaVersion = 4

// upgrades take an older schema to SchemaVersion, one version a step.
var upgrades = []sqlstore.Upgrade{
	// 2: the inspection API pages through a command's results by
	// enrollment ID.
	{Version: 2, SQL: `CREATE INDEX command_results_command_uuid_idx ON command_results (command_uuid, id);`},
	// 3: one-time challenges of the embedded SCEP server.
	{Version: 3, SQL: challengeTable},
	// 4: the webhook outbox.
	{Version: 4, SQL: outboxTable},
}

// dialect is PostgreSQL's part of the SQL storage.
var dialect = func() *sqlstore.Dialect {
	sc := schemaQueries
	sc.SQL = schemaSQL
	sc.Version = SchemaVersion
	sc.Upgrades = upgrades
	return &sqlstore.Dialect{
		Name:                 "pgsql",
		NumberedPlaceholders: true,
		MaxParams:            65535,
		PrepareHot:           true,
		Queries:              queries,
		Challenges:           challengeQueries,
		Outbox:               outboxQueries,
		Schema:               sc,
		IsDuplicate: func(err error) bool {
			return pq.As(err, pqerror.UniqueViolation) != nil
		},
		IsRetryable: func(err error) bool {
			return pq.As(err, pqerror.TRDeadlockDetected, pqerror.TRSerializationFailure) != nil
		},
	}
}()

// PgSQL is a storage.AllStorage over a PostgreSQL database.
type PgSQL struct {
	*sqlstore.Store
}

// Option configures the backend.
type Option = sqlstore.Option

// WithLogger sets the logger (retries of transient errors are logged at
// debug level, clean-up failures at info).
func WithLogger(l log.Logger) Option { return sqlstore.WithLogger(l) }

// WithDial sets the function that opens network connections to the
// server.
func WithDial(dial func(ctx context.Context, network, addr string) (net.Conn, error)) Option {
	return sqlstore.WithDial(dial)
}

// New connects to the database named by dsn (a lib/pq connection string:
// "host=… dbname=… user=…" or a postgres:// URL), applies options (see
// sqlstore.ParseConfig: delete, migrate and the pool settings), pings the
// server and checks the schema, creating or upgrading it when migrate=1.
//
// Parameters are always sent with their values in one message
// (lib/pq's binary_parameters), which saves a round trip per statement.
func New(ctx context.Context, dsn, options string, opts ...Option) (*PgSQL, error) {
	cfg, err := sqlstore.ParseConfig(options, opts...)
	if err != nil {
		return nil, err
	}
	pcfg, err := pq.NewConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("pgsql: parsing DSN: %w", err)
	}
	pcfg.BinaryParameters = true
	connector, err := pq.NewConnectorConfig(pcfg)
	if err != nil {
		return nil, fmt.Errorf("pgsql: %w", err)
	}
	if cfg.Dial != nil {
		connector.Dialer(dialer(cfg.Dial))
	}
	db := sql.OpenDB(connector)
	cfg.ConfigurePool(db)
	s := &PgSQL{Store: sqlstore.New(db, dialect, cfg)}
	if err := s.Prepare(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("pgsql: %w", err)
	}
	return s, nil
}

// dialer adapts a dial function to lib/pq's Dialer interfaces.
type dialer func(ctx context.Context, network, addr string) (net.Conn, error)

func (d dialer) Dial(network, addr string) (net.Conn, error) {
	return d(context.Background(), network, addr)
}

func (d dialer) DialTimeout(network, addr string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return d(ctx, network, addr)
}

func (d dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return d(ctx, network, addr)
}

// ErrSchema wraps every problem with the database schema.
var ErrSchema = sqlstore.ErrSchema
