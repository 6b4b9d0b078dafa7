// Package mysql is the MySQL and MariaDB storage backend
// (go-sql-driver/mysql). It keeps only what is MySQL's own: the SQL text,
// the error numbers, the driver settings and the embedded schema.sql; the
// storage logic is shared with the PostgreSQL backend. The schema and
// statements run on MySQL 8.0 and MariaDB 10.11 alike.
package mysql

import (
	"context"
	"database/sql"
	_ "embed"
	"errors"
	"fmt"
	"net"
	"strings"

	driver "github.com/go-sql-driver/mysql"

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
	{Version: 2, SQL: `CREATE INDEX nano_command_results_command_uuid_idx ON nano_command_results (command_uuid, id);`},
	// 3: one-time challenges of the embedded SCEP server.
	{Version: 3, SQL: challengeTable},
	// 4: the webhook outbox.
	{Version: 4, SQL: outboxTable},
}

// MySQL server error numbers we act on.
const (
	errDupEntry          = 1062
	errLockDeadlock      = 1213
	errRecordChanged     = 1020 // MariaDB snapshot isolation conflict
	errNetPacketTooLarge = 1153
)

var dialect = func() *sqlstore.Dialect {
	sc := schemaQueries
	sc.SQL = schemaSQL
	sc.Version = SchemaVersion
	sc.Upgrades = upgrades
	return &sqlstore.Dialect{
		Name: "mysql",
		// Parameters are interpolated client side (one round trip per
		// statement), so the limit is the packet size, not a count; keep
		// batches moderate anyway.
		MaxParams:   65535,
		Queries:     queries,
		Challenges:  challengeQueries,
		Outbox:      outboxQueries,
		Schema:      sc,
		IsDuplicate: func(err error) bool { return serverError(err, errDupEntry) },
		IsRetryable: func(err error) bool { return serverError(err, errLockDeadlock, errRecordChanged) },
		WrapError:   wrapError,
		// A parameter too large to interpolate is sent as long data,
		// which the server caps at max_allowed_packet; leave room for the
		// rest of the statement.
		MaxMessageBytes: func(ctx context.Context, db *sql.DB) (int, error) {
			var n int
			err := db.QueryRowContext(ctx, "SELECT @@max_allowed_packet").Scan(&n)
			return n - 64<<10, err
		},
		TooLargeHint: "raise max_allowed_packet on the MySQL server",
	}
}()

func serverError(err error, numbers ...uint16) bool {
	var me *driver.MySQLError
	if !errors.As(err, &me) {
		return false
	}
	for _, n := range numbers {
		if me.Number == n {
			return true
		}
	}
	return false
}

// ErrTooLarge means a command or result is larger than the server's
// max_allowed_packet allows.
var ErrTooLarge = sqlstore.ErrTooLarge

func wrapError(err error) error {
	if errors.Is(err, driver.ErrPktTooLarge) || serverError(err, errNetPacketTooLarge) {
		return fmt.Errorf("%w: statement larger than max_allowed_packet: %w", ErrTooLarge, err)
	}
	return err
}

// MySQL is a storage.AllStorage over a MySQL or MariaDB database.
type MySQL struct {
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

// DriverConfig parses a go-sql-driver DSN ("user:pass@tcp(host:3306)/db")
// and applies the settings the backend relies on: matched (not changed)
// row counts, client-side parameter interpolation (one round trip per
// statement) unless the DSN sets interpolateParams itself, and, unless the
// DSN sets maxAllowedPacket, the server's own max_allowed_packet so that
// an oversized statement fails cleanly before it is sent.
func DriverConfig(dsn string) (*driver.Config, error) {
	cfg, err := driver.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("mysql: parsing DSN: %w", err)
	}
	cfg.ClientFoundRows = true
	if !dsnSets(dsn, "interpolateParams") {
		cfg.InterpolateParams = true
	}
	if !dsnSets(dsn, "maxAllowedPacket") {
		cfg.MaxAllowedPacket = 0
	}
	if cfg.DBName == "" {
		return nil, errors.New("mysql: DSN names no database")
	}
	return cfg, nil
}

// dsnSets reports whether the parameter part of dsn names key.
func dsnSets(dsn, key string) bool {
	_, params, ok := strings.Cut(dsn, "?")
	if !ok {
		return false
	}
	for _, kv := range strings.Split(params, "&") {
		if k, _, _ := strings.Cut(kv, "="); k == key {
			return true
		}
	}
	return false
}

// New connects to the database named by dsn (see DriverConfig), applies
// options (see sqlstore.ParseConfig: delete, migrate and the pool
// settings), pings the server and checks the schema, creating or
// upgrading it when migrate=1.
func New(ctx context.Context, dsn, options string, opts ...Option) (*MySQL, error) {
	cfg, err := sqlstore.ParseConfig(options, opts...)
	if err != nil {
		return nil, err
	}
	dcfg, err := DriverConfig(dsn)
	if err != nil {
		return nil, err
	}
	if cfg.Dial != nil {
		dcfg.DialFunc = cfg.Dial
	}
	dcfg.Logger = driverLogger{cfg.Logger}
	connector, err := driver.NewConnector(dcfg)
	if err != nil {
		return nil, fmt.Errorf("mysql: %w", err)
	}
	db := sql.OpenDB(connector)
	cfg.ConfigurePool(db)
	s := &MySQL{Store: sqlstore.New(db, dialect, cfg)}
	if err := s.Prepare(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("mysql: %w", err)
	}
	return s, nil
}

// driverLogger turns the driver's own messages (such as "unexpected EOF"
// when the server drops a connection), which it would otherwise print to
// stderr unstructured, into log lines of the store's logger.
type driverLogger struct{ l log.Logger }

func (d driverLogger) Print(v ...any) {
	d.l.Info("msg", "mysql driver", "detail", strings.TrimSpace(fmt.Sprint(v...)))
}

// ErrSchema wraps every problem with the database schema.
var ErrSchema = sqlstore.ErrSchema
