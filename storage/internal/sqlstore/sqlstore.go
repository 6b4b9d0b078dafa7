// Package sqlstore is the storage logic shared by the SQL backends
// (storage/mysql and storage/pgsql): validation, batching, transactions,
// retries of transient errors, result mapping, push-certificate handling
// and schema management. Each backend supplies a Dialect (its SQL text with
// :name parameters, placeholder style, error classification and embedded
// schema) and embeds the *Store built from it.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/nanomdm/nanomdm/log"
	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/storage"
)

// Dialect is everything that differs between SQL servers.
type Dialect struct {
	// Name names the backend in errors ("mysql", "pgsql").
	Name string
	// NumberedPlaceholders selects $1, $2 … instead of ?.
	NumberedPlaceholders bool
	// MaxParams bounds the placeholders of one statement; batches of IDs
	// are sized to stay under it.
	MaxParams int

	Queries    Queries
	Challenges EnrollQueries
	Outbox     OutboxQueries
	Schema     Schema

	// IsDuplicate reports a unique-key violation.
	IsDuplicate func(error) bool
	// IsRetryable reports a deadlock or serialization failure: the
	// statement or transaction was rolled back and may simply be re-run.
	IsRetryable func(error) bool
	// WrapError, if set, turns a driver error into a clearer one (such as
	// a statement too large for the server).
	WrapError func(error) error
	// MaxMessageBytes, if set, reads from the server the size of the
	// largest raw message (command or result) one statement can carry.
	MaxMessageBytes func(ctx context.Context, db *sql.DB) (int, error)
	// TooLargeHint tells the operator how to allow larger messages.
	TooLargeHint string
	// PrepareHot prepares the statements of the command loop (see
	// hotQueries) on the server, once per connection, unless the prepare
	// option turns it off. It saves the server parsing and planning them
	// on every device request.
	PrepareHot bool
}

// ErrTooLarge means a raw message is larger than the database server
// accepts in one statement.
var ErrTooLarge = errors.New("message too large for the database server")

// Queries is the SQL text of a dialect. Parameters are written :name and
// bound by name (see Args); the names each statement may use are listed
// with it. A statement documented as optional may be empty when the
// dialect does its work inside the statement before it.
//
// The queue keeps one row per (enrollment, command) with an active flag, a
// not-now flag, a priority and a per-row sequence; the next command is the
// active row of highest priority and lowest sequence.
type Queries struct {
	// UpsertAuthenticate stores a device: :id, :identity_cert (PEM text
	// or nil), :serial_number, :authenticate (raw bytes). Push data,
	// unlock and bootstrap tokens of an existing row are kept.
	UpsertAuthenticate string
	// DisableDevice disables every channel of :device_id (the device
	// channel and its users) and resets their TokenUpdate tallies.
	DisableDevice string
	// SelectChannelIDs returns the enrollment IDs whose device is
	// :device_id, the device channel included.
	SelectChannelIDs string
	// DeactivateQueues marks every active queue row of the enrollments
	// :ids inactive.
	DeactivateQueues string
	// SelectQueuedCommands returns the distinct command UUIDs queued
	// (active or not) for the enrollments :ids.
	SelectQueuedCommands string
	// DeleteQueues deletes every queue row (and so every result) of the
	// enrollments :ids.
	DeleteQueues string
	// DeleteOrphanCommands deletes those of the commands :uuids that no
	// queue row refers to any more.
	DeleteOrphanCommands string

	// UpsertDeviceTokenUpdate stores a device channel's TokenUpdate: :id,
	// :token_update (raw bytes), :unlock_token (bytes, or nil to keep the
	// stored one). A device row is created if missing.
	UpsertDeviceTokenUpdate string
	// UpsertUserTokenUpdate stores a user channel's TokenUpdate: :id,
	// :device_id, :user_short_name, :user_long_name, :token_update.
	UpsertUserTokenUpdate string
	// UpsertEnrollment enables a channel with its push data and counts
	// its TokenUpdate: :id, :device_id, :type, :topic, :push_magic,
	// :token_hex. The tally becomes 1 for a new row, else +1.
	UpsertEnrollment string
	// UpsertUserAuthenticate stores a first UserAuthenticate message and
	// UpsertUserAuthenticateDigest the second (with a DigestResponse):
	// :id, :device_id, :user_short_name, :user_long_name, :raw.
	UpsertUserAuthenticate       string
	UpsertUserAuthenticateDigest string
	// SelectTally returns the TokenUpdate tally of :id.
	SelectTally string

	// Touch sets the last-seen time of enrollment :id.
	Touch string
	// ReportDone takes command :uuid off the queue of :id (only while its
	// row is active) and sets the last-seen time; its affected-row count
	// is 0 when the command was not queued. Dialects that cannot also
	// store the result in that statement set ReportDoneResult, which runs
	// first and stores :status and :result (raw bytes) only while the
	// queue row is active: if the server dies between the two, the result
	// is kept and the command is sent again, never acknowledged without
	// its result.
	ReportDone       string
	ReportDoneResult string
	// ReportNotNow and ReportNotNowResult do the same for a NotNow
	// report: the row stays active and is flagged not-now; the result
	// keeps the time of the first NotNow and counts them.
	ReportNotNow       string
	ReportNotNowResult string
	// ReportDelete (delete=1) deletes the active queue row of :uuid for
	// :id (and with it any stored result); 0 affected rows when not
	// queued. ReportDeleteTouch (optional) then sets the last-seen time.
	ReportDelete      string
	ReportDeleteTouch string
	// NextCommand returns command_uuid, request_type and command (raw
	// bytes) of the next command of :id; NextCommandSkipNotNow skips
	// rows flagged not-now. Both use the queue's next-command index.
	NextCommand           string
	NextCommandSkipNotNow string

	// InsertCommand stores a command: :uuid, :request_type, :command.
	InsertCommand string
	// SelectEnrollmentIDs returns those of :ids that have an enrollment
	// (a channel that sent a TokenUpdate).
	SelectEnrollmentIDs string
	// InsertQueueRows queues commands: :rows of (enrollment ID, UUID).
	InsertQueueRows string
	// QueueForEnrollments (optional) queues :uuid for those of :ids that
	// have an enrollment and returns their IDs: SelectEnrollmentIDs and
	// InsertQueueRows in one statement, for a dialect with RETURNING.
	QueueForEnrollments string

	// StoreBootstrapToken sets (or, nil, clears) :token of device :id.
	StoreBootstrapToken string
	// SelectBootstrapToken returns the token of device :id.
	SelectBootstrapToken string

	// SelectPushInfo returns id, topic, push_magic, token_hex of :ids.
	SelectPushInfo string
	// UpsertPushCert stores :cert and :key (PEM text) and :stale_token
	// under :topic, replacing an earlier certificate.
	UpsertPushCert string
	// SelectPushCert returns cert, key and stale_token of :topic.
	SelectPushCert string
	// SelectPushCertStaleToken returns the stale_token of :topic.
	SelectPushCertStaleToken string
	// SelectPushCertTopics returns the topic of every push certificate.
	SelectPushCertTopics string

	// HasCertHash returns a row when :sha256 is associated with any
	// enrollment; EnrollmentHasCertHash when :id has any hash;
	// IsCertHashAssociated when :id has :sha256.
	HasCertHash           string
	EnrollmentHasCertHash string
	IsCertHashAssociated  string
	// AssociateCertHash associates :sha256 (valid until :not_after) with
	// :id; associating again is not an error.
	AssociateCertHash string
	// CertHashTaken returns a row when :sha256 is associated with an id
	// other than :id.
	CertHashTaken string
	// LockCertHash takes a lock on :sha256 that serialises associating
	// it between servers sharing the database, and returns one row whose
	// first column is 1 on success. With UnlockCertHash empty it is a
	// transaction lock (released at commit); otherwise a session lock
	// that UnlockCertHash releases.
	LockCertHash   string
	UnlockCertHash string

	// SelectMigration returns device_id, kind, id, raw for every enabled
	// device with both an Authenticate and a TokenUpdate: kind 0 is its
	// Authenticate, kind 1 its TokenUpdate, kind 2 the TokenUpdate of
	// one of its enabled users; ordered by device_id, kind, id (bytewise).
	SelectMigration string

	// SelectEnrollmentIDByCertHash returns the smallest id associated
	// with :sha256.
	SelectEnrollmentIDByCertHash string

	// SelectEnrollments returns, for the inspection API, at most :limit
	// enrollments with id greater than :after, ordered by id: id,
	// device_id, type, enabled, the device's serial number ('' when
	// none), topic, last seen (Unix microseconds), token_update_tally and
	// whether the device has a bootstrap token. Filters, each off at its
	// zero value: :serial (the device's serial number), :type, :enabled
	// (-1 off, else 0 or 1), :before_us and :after_us (last seen strictly
	// before or after, Unix microseconds, 0 off). It reads the
	// enrollments primary key in order. SelectEnrollmentsByIDs is the
	// same restricted to the ids :ids.
	SelectEnrollments      string
	SelectEnrollmentsByIDs string
	// SelectQueue returns at most :limit active queue rows of :id in
	// delivery order (priority descending, then seq) after the position
	// :priority, :seq: command_uuid, request_type, enqueued (Unix
	// microseconds), the latest result's status ('' when none), its
	// not-now tally and first not-now time (Unix microseconds, 0 when
	// none), priority and seq.
	SelectQueue string
	// SelectCommandResults returns id, status and result of at most
	// :limit results of command :uuid whose id is greater than :after,
	// ordered by id; SelectCommandStatuses returns only id and status.
	SelectCommandResults  string
	SelectCommandStatuses string

	// SelectFleetCounts returns topic, type, enabled, last-seen window
	// (0 when last seen after :seen0, 1 after :seen1, 2 after :seen2,
	// else 3; Unix microseconds) and count of every group of enrollments;
	// CountQueued the number of outstanding queue rows.
	SelectFleetCounts string
	CountQueued       string

	// SelectIdentityCert returns the identity_cert (PEM text or NULL) of
	// device :id.
	SelectIdentityCert string
	// SelectRecentResults returns at most :limit results of :id, newest
	// first (ties by command_uuid): command_uuid, request_type ('' when
	// the command is gone), status, stored at (Unix microseconds) and
	// result.
	SelectRecentResults string
	// DeactivateQueued marks the active queue row of :uuid for :id
	// inactive; DeleteQueued (delete=1) deletes it. Each affects 0 rows
	// when the command is not outstanding there.
	DeactivateQueued string
	DeleteQueued     string
}

// Store implements storage.AllStorage over a *sql.DB with a Dialect.
type Store struct {
	db         *sql.DB
	d          *Dialect
	cfg        *Config
	logger     log.Logger
	stmts      statementCache
	maxMessage int // 0: no limit known

	// prepared maps the text of each hot statement to its prepared
	// form; filled by Prepare, read-only afterwards.
	prepared map[string]*sql.Stmt
}

// New returns a store over db. The schema is expected to be in place
// (see Migrate and CheckSchema).
func New(db *sql.DB, d *Dialect, cfg *Config) *Store {
	if cfg == nil {
		cfg = &Config{}
	}
	logger := cfg.Logger
	if logger == nil {
		logger = log.Nop
	}
	return &Store{db: db, d: d, cfg: cfg, logger: logger}
}

// hotQueries are the statements device requests run: the command loop,
// the certificate checks and the check-ins. They take no list parameters,
// so each renders to one fixed query that can be prepared once per
// connection.
func (q *Queries) hotQueries() []string {
	return []string{
		q.Touch, q.ReportDone, q.ReportDoneResult, q.ReportNotNow, q.ReportNotNowResult,
		q.ReportDelete, q.ReportDeleteTouch, q.NextCommand, q.NextCommandSkipNotNow,
		q.HasCertHash, q.EnrollmentHasCertHash, q.IsCertHashAssociated,
		q.UpsertAuthenticate, q.UpsertDeviceTokenUpdate, q.UpsertUserTokenUpdate, q.UpsertEnrollment, q.SelectTally,
	}
}

// statementFor returns the prepared statement of text when it is a hot
// statement prepared by Prepare; otherwise nil. database/sql prepares it
// again on each connection that runs it; in a transaction the statement
// is bound to the transaction's connection (and closed with it, the
// connection keeping it prepared).
func (s *Store) statementFor(ctx context.Context, q querier, text string) *sql.Stmt {
	st := s.prepared[text]
	if st == nil {
		return nil
	}
	switch q := q.(type) {
	case *sql.DB:
		if q == s.db {
			return st
		}
	case *sql.Tx:
		return q.StmtContext(ctx, st)
	}
	return nil
}

// prepareHot prepares every hot statement on the pool, unless the dialect
// and the prepare option say not to. It runs when the store opens, before
// any transaction: a statement first prepared from inside a transaction
// would need a second connection, and with every connection of the pool
// in a transaction that would wait forever.
func (s *Store) prepareHot(ctx context.Context) error {
	on := s.d.PrepareHot
	if s.cfg.Prepare != nil {
		on = *s.cfg.Prepare
	}
	if !on {
		return nil
	}
	s.prepared = map[string]*sql.Stmt{}
	for _, text := range s.d.Queries.hotQueries() {
		if text == "" || s.prepared[text] != nil {
			continue
		}
		// Hot statements take only scalar parameters, so the query
		// text does not depend on their values.
		st := s.stmts.get(text)
		args := Args{}
		for _, p := range st.parts {
			if p.param != "" {
				args[p.param] = nil
			}
		}
		query, _, err := s.d.bind(st, args)
		if err != nil {
			return err
		}
		prepared, err := s.db.PrepareContext(ctx, query)
		if err != nil {
			return fmt.Errorf("preparing statement: %w", s.wrap(err))
		}
		s.prepared[text] = prepared
	}
	return nil
}

// DB returns the connection pool of the store.
func (s *Store) DB() *sql.DB { return s.db }

// Prepare pings the server and checks the schema (with the migrate
// option it first creates or upgrades it), then prepares the hot
// statements when the dialect or the prepare option asks for it.
func (s *Store) Prepare(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	if s.d.MaxMessageBytes != nil {
		n, err := s.d.MaxMessageBytes(ctx, s.db)
		if err != nil {
			return fmt.Errorf("reading message size limit: %w", err)
		}
		s.maxMessage = n
	}
	if s.cfg.Migrate {
		if err := s.Migrate(ctx); err != nil {
			return err
		}
	}
	if err := s.CheckSchema(ctx); err != nil {
		return err
	}
	return s.prepareHot(ctx)
}

// Close closes the prepared statements and the connection pool.
func (s *Store) Close() error {
	for _, st := range s.prepared {
		st.Close()
	}
	return s.db.Close()
}

// querier is what *sql.DB, *sql.Tx and *sql.Conn have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func (s *Store) render(text string, args Args) (string, []any, error) {
	if text == "" {
		return "", nil, fmt.Errorf("%s: statement not defined by dialect", s.d.Name)
	}
	return s.d.bind(s.stmts.get(text), args)
}

// exec runs a statement and returns its affected-row count.
func (s *Store) exec(ctx context.Context, q querier, text string, args Args) (int64, error) {
	query, vals, err := s.render(text, args)
	if err != nil {
		return 0, err
	}
	st := s.statementFor(ctx, q, text)
	var res sql.Result
	if st != nil {
		res, err = st.ExecContext(ctx, vals...)
	} else {
		res, err = q.ExecContext(ctx, query, vals...)
	}
	if err != nil {
		return 0, s.wrap(err)
	}
	return res.RowsAffected()
}

// query runs a statement that returns rows.
func (s *Store) query(ctx context.Context, q querier, text string, args Args) (*sql.Rows, error) {
	query, vals, err := s.render(text, args)
	if err != nil {
		return nil, err
	}
	st := s.statementFor(ctx, q, text)
	var rows *sql.Rows
	if st != nil {
		rows, err = st.QueryContext(ctx, vals...)
	} else {
		rows, err = q.QueryContext(ctx, query, vals...)
	}
	return rows, s.wrap(err)
}

func (s *Store) wrap(err error) error {
	if err == nil || s.d.WrapError == nil {
		return err
	}
	return s.d.WrapError(err)
}

// scanOne runs a statement and scans its first row into dest. It reports
// false, and no error, when there is no row.
func (s *Store) scanOne(ctx context.Context, q querier, text string, args Args, dest ...any) (bool, error) {
	rows, err := s.query(ctx, q, text, args)
	if err != nil {
		return false, err
	}
	defer rows.Close()
	if !rows.Next() {
		return false, rows.Err()
	}
	if err := rows.Scan(dest...); err != nil {
		return false, err
	}
	return true, rows.Close()
}

// scanStrings runs a statement returning one text column.
func (s *Store) scanStrings(ctx context.Context, q querier, text string, args Args) ([]string, error) {
	rows, err := s.query(ctx, q, text, args)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// Retry policy for deadlocks and serialization failures.
const (
	maxAttempts  = 10
	retryBackoff = 2 * time.Millisecond
	maxBackoff   = 200 * time.Millisecond
)

// retry runs op until it succeeds, fails with a non-retryable error, or
// has been tried maxAttempts times. op must be safe to re-run: one
// autocommit statement, or a whole transaction.
func (s *Store) retry(ctx context.Context, what string, op func() error) error {
	for attempt := 1; ; attempt++ {
		err := op()
		if err == nil || attempt == maxAttempts || s.d.IsRetryable == nil || !s.d.IsRetryable(err) {
			return err
		}
		wait := min(retryBackoff<<attempt, maxBackoff)
		wait = wait/2 + rand.N(wait)
		s.logger.Debug("msg", "retrying after transient database error", "op", what, "attempt", attempt, "wait", wait.String(), "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(err, ctx.Err())
		case <-t.C:
		}
	}
}

// execRetry runs one autocommit statement on the pool, retrying it on
// deadlocks and serialization failures, and returns its affected-row
// count.
func (s *Store) execRetry(ctx context.Context, what, text string, args Args) (int64, error) {
	var n int64
	err := s.retry(ctx, what, func() error {
		var err error
		n, err = s.exec(ctx, s.db, text, args)
		return err
	})
	return n, err
}

// inTx runs fn in a transaction, retrying the whole transaction on
// deadlocks and serialization failures.
func (s *Store) inTx(ctx context.Context, what string, fn func(tx *sql.Tx) error) error {
	return s.inTxIso(ctx, what, sql.LevelDefault, fn)
}

// inTxIso is inTx at isolation level iso.
func (s *Store) inTxIso(ctx context.Context, what string, iso sql.IsolationLevel, fn func(tx *sql.Tx) error) error {
	return s.retry(ctx, what, func() error {
		tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: iso})
		if err != nil {
			return err
		}
		if err := fn(tx); err != nil {
			tx.Rollback()
			return err
		}
		return tx.Commit()
	})
}

// requestIDs returns the enrollment ID of r and its device-channel ID.
func requestIDs(r *mdm.Request) (ctx context.Context, id, deviceID string, err error) {
	if r == nil || r.EnrollID == nil || r.EnrollID.ID == "" {
		return nil, "", "", mdm.ErrInvalidEnrollment
	}
	ctx = r.Context
	if ctx == nil {
		ctx = context.Background()
	}
	id = r.EnrollID.ID
	if err := mdm.ValidateEnrollmentID(id); err != nil {
		return nil, "", "", err
	}
	deviceID = id
	if r.EnrollID.ParentID != "" {
		deviceID = r.EnrollID.ParentID
	}
	return ctx, id, deviceID, nil
}

// batchSize is how many IDs go into one IN list or VALUES list of
// perID parameters each.
func (s *Store) batchSize(perID int) int {
	const preferred = 5000
	n := preferred
	if s.d.MaxParams > 0 {
		n = min(n, (s.d.MaxParams-8)/perID)
	}
	return max(n, 1)
}

// batches splits ids into consecutive slices of at most n.
func batches(ids []string, n int) [][]string {
	var out [][]string
	for len(ids) > n {
		out = append(out, ids[:n])
		ids = ids[n:]
	}
	if len(ids) > 0 {
		out = append(out, ids)
	}
	return out
}

// validIDs splits ids into valid, de-duplicated IDs (in order) and
// per-ID errors for the malformed ones.
func validIDs(ids []string) ([]string, map[string]error) {
	var errs map[string]error
	seen := make(map[string]bool, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		if err := mdm.ValidateEnrollmentID(id); err != nil {
			if errs == nil {
				errs = map[string]error{}
			}
			errs[id] = err
			continue
		}
		out = append(out, id)
	}
	return out, errs
}

// checkSize refuses a raw message the server would not take.
func (s *Store) checkSize(what string, raw []byte) error {
	if s.maxMessage > 0 && len(raw) > s.maxMessage {
		return fmt.Errorf("%w: %s of %d bytes, at most %d: %s", ErrTooLarge, what, len(raw), s.maxMessage, s.d.TooLargeHint)
	}
	return nil
}

// nilIfEmpty stores empty byte slices as NULL.
func nilIfEmpty(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

var _ storage.AllStorage = (*Store)(nil)
