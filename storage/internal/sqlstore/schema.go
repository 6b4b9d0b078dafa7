package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// Schema describes a dialect's schema and how to manage it.
//
// SQL is the complete current schema (the backend's schema.sql), which
// also creates the version table and records Version in it. Upgrades take
// a database from one version to the next: Upgrades[i] turns version
// Upgrades[i].Version-1 into Upgrades[i].Version, and the last one ends at
// Version. An empty database gets SQL; an older one gets the upgrades it
// lacks, each recorded in the version table.
type Schema struct {
	SQL      string
	Version  int
	Upgrades []Upgrade

	// Tables lists the schema's tables, version table included; a
	// database holding any of them but no version table is refused.
	Tables []string
	// VersionTable is the table of applied versions.
	VersionTable string
	// TransactionalDDL runs the whole migration, lock included, in one
	// transaction (PostgreSQL). Without it (MySQL, where DDL commits
	// implicitly) statements are applied one by one.
	TransactionalDDL bool

	// CountTables returns how many of :names exist in the current
	// database or schema.
	CountTables string
	// SelectVersion returns the highest applied version.
	SelectVersion string
	// InsertVersion records :version as applied.
	InsertVersion string
	// Lock takes the lock that serialises schema changes between servers
	// starting together; it must return one row whose first column is 1
	// on success. With TransactionalDDL it is a transaction lock, released
	// at commit, and Unlock is empty; otherwise a session lock that Unlock
	// releases.
	Lock   string
	Unlock string
}

// Upgrade is one step of schema change.
type Upgrade struct {
	Version int
	SQL     string
}

// ErrSchema wraps every problem with the database schema.
var ErrSchema = errors.New("database schema")

// SchemaVersion returns the version recorded in the database, and false
// when there is no version table.
func (s *Store) SchemaVersion(ctx context.Context) (int, bool, error) {
	return s.schemaVersion(ctx, s.db)
}

func (s *Store) schemaVersion(ctx context.Context, q querier) (int, bool, error) {
	sc := &s.d.Schema
	var n int
	if _, err := s.scanOne(ctx, q, sc.CountTables, Args{"names": []string{sc.VersionTable}}, &n); err != nil {
		return 0, false, err
	}
	if n == 0 {
		return 0, false, nil
	}
	var v sql.NullInt64
	if _, err := s.scanOne(ctx, q, sc.SelectVersion, Args{}, &v); err != nil {
		return 0, false, err
	}
	return int(v.Int64), true, nil
}

// CheckSchema fails unless the database holds this schema at Version or
// later (later versions only add to it, so an older server keeps working
// during a rolling upgrade).
func (s *Store) CheckSchema(ctx context.Context) error {
	sc := &s.d.Schema
	v, ok, err := s.schemaVersion(ctx, s.db)
	switch {
	case err != nil:
		return fmt.Errorf("reading schema version: %w", err)
	case !ok:
		return fmt.Errorf("%w: no %s schema found (no %s table): apply schema.sql or set storage option migrate=1",
			ErrSchema, s.d.Name, sc.VersionTable)
	case v < sc.Version:
		return fmt.Errorf("%w: version %d is older than %d: upgrade it with storage option migrate=1",
			ErrSchema, v, sc.Version)
	}
	return nil
}

// Migrate creates the schema in an empty database or applies the
// upgrades an older one lacks. It holds the dialect's schema lock
// throughout, so servers starting together apply each step once.
//
// With TransactionalDDL (PostgreSQL) the lock is taken inside one
// transaction that holds every step, and released by its end: no session
// state outlives a statement, so migrating works through a connection
// pooler in transaction mode. Otherwise (MySQL) the lock is a session
// lock on one connection, and each statement commits on its own.
func (s *Store) Migrate(ctx context.Context) error {
	sc := &s.d.Schema
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migrating schema: %w", err)
	}
	defer conn.Close()
	var locked int
	lock := func(q querier) error {
		if _, err := s.scanOne(ctx, q, sc.Lock, Args{}, &locked); err != nil || locked != 1 {
			return fmt.Errorf("migrating schema: taking schema lock (result %d): %w", locked, err)
		}
		return nil
	}
	if sc.TransactionalDDL {
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("migrating schema: %w", err)
		}
		if err := lock(tx); err != nil {
			tx.Rollback()
			return err
		}
		if err := s.migrate(ctx, tx); err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migrating schema: committing: %w", err)
		}
		return nil
	}
	if err := lock(conn); err != nil {
		return err
	}
	err = s.migrate(ctx, conn)
	if _, uerr := s.exec(context.WithoutCancel(ctx), conn, sc.Unlock, Args{}); uerr != nil && err == nil {
		err = fmt.Errorf("migrating schema: releasing schema lock: %w", uerr)
	}
	return err
}

// migrate creates or upgrades the schema on q, which holds the lock.
func (s *Store) migrate(ctx context.Context, q querier) error {
	sc := &s.d.Schema
	v, ok, err := s.schemaVersion(ctx, q)
	if err != nil {
		return fmt.Errorf("migrating schema: reading version: %w", err)
	}
	if !ok {
		var n int
		if _, err := s.scanOne(ctx, q, sc.CountTables, Args{"names": sc.Tables}, &n); err != nil {
			return fmt.Errorf("migrating schema: %w", err)
		}
		if n > 0 {
			return fmt.Errorf("%w: database has %d %s tables but no %s table: not created by this server's schema, refusing to change it",
				ErrSchema, n, s.d.Name, sc.VersionTable)
		}
		if err := s.apply(ctx, q, sc.SQL, 0); err != nil {
			return fmt.Errorf("migrating schema: creating version %d: %w", sc.Version, err)
		}
		s.logger.Info("msg", "created database schema", "version", sc.Version)
		return nil
	}
	for _, u := range sc.Upgrades {
		if u.Version <= v {
			continue
		}
		if err := s.apply(ctx, q, u.SQL, u.Version); err != nil {
			return fmt.Errorf("migrating schema: upgrading to version %d: %w", u.Version, err)
		}
		s.logger.Info("msg", "upgraded database schema", "from", v, "to", u.Version)
		v = u.Version
	}
	return nil
}

// apply runs the statements of script on q, then records version (unless
// 0: the full schema records its own).
func (s *Store) apply(ctx context.Context, q querier, script string, version int) error {
	for _, st := range SplitStatements(script) {
		if _, err := q.ExecContext(ctx, st); err != nil {
			return fmt.Errorf("%w\nin statement:\n%s", err, st)
		}
	}
	if version > 0 {
		if _, err := s.exec(ctx, q, s.d.Schema.InsertVersion, Args{"version": version}); err != nil {
			return err
		}
	}
	return nil
}

// SplitStatements splits an SQL script at the semicolons that end its
// statements, skipping -- comments and quoted text. Empty statements are
// dropped.
func SplitStatements(script string) []string {
	var out []string
	var b strings.Builder
	emit := func() {
		if st := strings.TrimSpace(b.String()); st != "" {
			out = append(out, st)
		}
		b.Reset()
	}
	for i := 0; i < len(script); i++ {
		c := script[i]
		switch {
		case c == '-' && i+1 < len(script) && script[i+1] == '-':
			for i < len(script) && script[i] != '\n' {
				i++
			}
			b.WriteByte('\n')
		case c == '\'' || c == '"' || c == '`':
			j := i + 1
			for j < len(script) && script[j] != c {
				j++
			}
			b.WriteString(script[i:min(j+1, len(script))])
			i = j
		case c == ';':
			emit()
		default:
			b.WriteByte(c)
		}
	}
	emit()
	return out
}
