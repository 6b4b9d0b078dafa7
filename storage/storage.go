// Package storage defines the role interfaces through which services keep
// enrollments, command queues, push data, certificates and tokens. Each
// backend (file, inmem, mysql, pgsql, allmulti) lives in a subpackage and
// passes the one contract suite in storagetest.
package storage

import (
	"context"
	"crypto/tls"
	"errors"
	"time"

	"github.com/nanomdm/nanomdm/mdm"
)

// Sentinel errors shared by every backend. Test with errors.Is.
var (
	// ErrUnknownCommand means a command report names a CommandUUID that is
	// not in the enrollment's queue. The report is dropped.
	ErrUnknownCommand = errors.New("command not queued for enrollment")

	// ErrDuplicateCommand means EnqueueCommand was given a CommandUUID that
	// already exists.
	ErrDuplicateCommand = errors.New("command UUID already exists")

	// ErrUnknownEnrollment means an ID names no enrollment that has sent a
	// TokenUpdate (a device that only sent Authenticate is unknown too).
	ErrUnknownEnrollment = errors.New("enrollment not found")

	// ErrNoPushCert means no push certificate is stored for a topic.
	ErrNoPushCert = errors.New("no push certificate for topic")

	// ErrInvalidCheckOut means a CheckOut arrived on a user channel.
	ErrInvalidCheckOut = errors.New("check-out is only valid on a device channel")

	// ErrCertHashTaken means AssociateCertHash was asked to bind a
	// certificate hash that is already associated with another
	// enrollment.
	ErrCertHashTaken = errors.New("certificate hash is associated with another enrollment")

	// ErrBadCursor means a pagination cursor is not one the backend
	// handed out.
	ErrBadCursor = errors.New("invalid pagination cursor")
)

// CheckinStore stores the enrollment-shaping check-in messages.
type CheckinStore interface {
	// StoreAuthenticate records the device (identity certificate, serial
	// number, raw message), clears the queue of the device and of its user
	// channels, and disables them all (tally reset) until a TokenUpdate.
	StoreAuthenticate(r *mdm.Request, msg *mdm.Authenticate) error

	// StoreTokenUpdate records the raw message and the channel's push
	// data, enables the channel, sets last seen, and counts the tally (1
	// on the first TokenUpdate after Authenticate, then +1). An
	// UnlockToken is kept; a later TokenUpdate without one never erases it.
	StoreTokenUpdate(r *mdm.Request, msg *mdm.TokenUpdate) error

	// StoreUserAuthenticate records the raw UserAuthenticate message.
	StoreUserAuthenticate(r *mdm.Request, msg *mdm.UserAuthenticate) error

	// Disable turns off the device channel of r and its user channels and
	// resets their TokenUpdate tallies to 0. On a user channel it returns
	// ErrInvalidCheckOut.
	Disable(r *mdm.Request) error
}

// CommandQueueStore is the device side of the command queue.
type CommandQueueStore interface {
	// StoreCommandReport records a report. Idle stores nothing but the
	// last-seen time. Acknowledged, Error and CommandFormatError (and any
	// other non-NotNow status) take the command off the enrollment's
	// queue; NotNow keeps it queued, sets the first NotNow time and counts
	// NotNows. A report for a CommandUUID not queued for the enrollment
	// (never enqueued for it, or already answered) returns
	// ErrUnknownCommand and changes nothing.
	StoreCommandReport(r *mdm.Request, report *mdm.CommandResults) error

	// RetrieveNextCommand returns the next command for the enrollment: the
	// highest priority, then the earliest enqueued, among its queued
	// commands with no result or a NotNow result (NotNow ones skipped when
	// skipNotNow is true). It returns nil and no error when there is none.
	RetrieveNextCommand(r *mdm.Request, skipNotNow bool) (*mdm.Command, error)

	// ClearQueue removes every outstanding command of the enrollment of r
	// and, for a device channel, of its user channels.
	ClearQueue(r *mdm.Request) error
}

// CommandEnqueuer is the operator side of the command queue.
type CommandEnqueuer interface {
	// EnqueueCommand queues cmd for each ID, in order. Disabled (checked
	// out) enrollments still accept commands. Per-ID failures
	// (ErrUnknownEnrollment for an ID that never sent a TokenUpdate, an
	// error wrapping mdm.ErrInvalidID for a malformed one) are returned in
	// the map, keyed by ID; an error that fails the whole call (such as
	// ErrDuplicateCommand) is returned as the error. A nil map means no ID
	// failed. An ID listed twice is queued once. When no ID was queued
	// (every one failed, or none given) nothing is stored: the
	// CommandUUID stays free, so the same command can be enqueued again.
	EnqueueCommand(ctx context.Context, ids []string, cmd *mdm.Command) (map[string]error, error)
}

// BootstrapTokenStore escrows bootstrap tokens.
type BootstrapTokenStore interface {
	// StoreBootstrapToken stores the token of msg; an empty token clears
	// it. For a device that never authenticated it returns
	// ErrUnknownEnrollment.
	StoreBootstrapToken(r *mdm.Request, msg *mdm.SetBootstrapToken) error

	// RetrieveBootstrapToken returns the escrowed token, or nil and no
	// error when there is none or the device is unknown.
	RetrieveBootstrapToken(r *mdm.Request, msg *mdm.GetBootstrapToken) (*mdm.BootstrapToken, error)
}

// PushStore gives the push data of enrollments.
type PushStore interface {
	// RetrievePushInfo returns the push data of the given IDs, enabled or
	// not. IDs with no push data (unknown, malformed, or never sent a
	// TokenUpdate) are absent.
	RetrievePushInfo(ctx context.Context, ids []string) (map[string]*mdm.Push, error)
}

// PushCertRetriever reads APNs push certificates, one per topic.
type PushCertRetriever interface {
	// RetrievePushCert returns the certificate for topic and a stale token
	// that changes whenever the stored certificate changes. It returns
	// ErrNoPushCert when there is none.
	RetrievePushCert(ctx context.Context, topic string) (cert *tls.Certificate, staleToken string, err error)

	// IsPushCertStale reports whether the certificate for topic differs
	// from the one staleToken was returned with. For an unknown topic it
	// returns ErrNoPushCert.
	IsPushCertStale(ctx context.Context, topic string, staleToken string) (bool, error)
}

// PushCertLister lists the stored push certificates.
type PushCertLister interface {
	// RetrievePushCertTopics returns the topic of every stored push
	// certificate, in bytewise order; none stored is an empty result.
	RetrievePushCertTopics(ctx context.Context) ([]string, error)
}

// PushCertStore keeps APNs push certificates, one per topic.
type PushCertStore interface {
	PushCertRetriever

	// StorePushCert stores a PEM certificate and unencrypted PEM key under
	// the topic of the certificate, replacing any earlier one.
	StorePushCert(ctx context.Context, pemCert, pemKey []byte) error
}

// CertAuthStore associates identity certificate hashes with enrollments.
// IDs are device-channel IDs (r.EnrollID.ParentID for user channels).
type CertAuthStore interface {
	// HasCertHash reports whether hash is associated with any enrollment.
	// r may name no enrollment: a server asks before it has read the
	// request body that names one.
	HasCertHash(r *mdm.Request, hash string) (bool, error)
	// EnrollmentHasCertHash reports whether the enrollment of r has any
	// associated hash.
	EnrollmentHasCertHash(r *mdm.Request, hash string) (bool, error)
	// IsCertHashAssociated reports whether hash is associated with the
	// enrollment of r.
	IsCertHashAssociated(r *mdm.Request, hash string) (bool, error)
	// AssociateCertHash associates hash with the enrollment of r. When
	// hash is already associated with another enrollment it stores
	// nothing and returns ErrCertHashTaken. The check and the write are
	// one atomic step for every server sharing the storage, so one
	// certificate is never bound to two enrollments. Associating a hash
	// the enrollment already has updates certNotAfter.
	AssociateCertHash(r *mdm.Request, hash string, certNotAfter time.Time) error
}

// MigrationStore reads enrollments back as check-in messages.
type MigrationStore interface {
	// RetrieveMigrationCheckins sends, for every enabled device that has
	// sent a TokenUpdate (in ID order), its raw Authenticate then its
	// latest raw TokenUpdate, then the latest TokenUpdates of its enabled
	// user channels (in ID order), as decoded check-in messages
	// (*mdm.Authenticate, *mdm.TokenUpdate). It does not close c: the
	// caller owns it. When ctx is cancelled it returns ctx's error.
	RetrieveMigrationCheckins(ctx context.Context, c chan<- any) error
}

// TokenUpdateTallyStore reads the TokenUpdate tally of an enrollment.
type TokenUpdateTallyStore interface {
	// RetrieveTokenUpdateTally returns the tally: 0 for an unknown or
	// disabled enrollment.
	RetrieveTokenUpdateTally(ctx context.Context, id string) (int, error)
}

// ServiceStore is what the core MDM service needs.
type ServiceStore interface {
	CheckinStore
	CommandQueueStore
	BootstrapTokenStore
	TokenUpdateTallyStore
}

// AllStorage is every role a backend implements: every backend is all
// of these, and the contract suite checks each.
type AllStorage interface {
	ServiceStore
	CommandEnqueuer
	PushStore
	PushCertStore
	PushCertLister
	CertAuthStore
	CertAuthRetriever
	MigrationStore
	InspectionStore
	FleetCounter
	EnrollmentDetailer
	QueuedCommandRemover
	SCEPChallengeStore
	OutboxStore
	Pinger
}

// Clock is time.Now, injectable for tests.
type Clock func() time.Time

// CertAuthRetriever finds the enrollment that a certificate hash belongs
// to, for services (such as the auth proxy) that know a device only by
// its identity certificate.
type CertAuthRetriever interface {
	// RetrieveEnrollmentIDByCertHash returns the device-channel ID that
	// hash is associated with (see CertAuthStore). It returns an error
	// wrapping ErrUnknownEnrollment when the hash is associated with
	// none. Should several devices share a hash (certauth never binds one
	// certificate to two devices, but an operator may), the bytewise
	// smallest ID is returned.
	RetrieveEnrollmentIDByCertHash(ctx context.Context, hash string) (string, error)
}

// Pinger reports whether a backend can answer, for readiness checks.
type Pinger interface {
	// Ping returns nil when the backend can serve requests: its database
	// answers, or its directory can be read.
	Ping(ctx context.Context) error
}

// Enrollment is what the inspection API shows of one enrollment (an MDM
// channel that has sent a TokenUpdate). It never holds a token.
type Enrollment struct {
	// ID is the enrollment ID; ParentID the device channel's ID for a
	// user channel, empty for a device channel.
	ID       string
	ParentID string
	// Type is the channel type, as mdm.EnrollType.String() names it.
	Type    string
	Enabled bool
	// SerialNumber is the device's, from its Authenticate (user channels
	// show their device's); empty when the device never sent one.
	SerialNumber string
	Topic        string
	// LastSeen is when the channel was last heard from: every TokenUpdate
	// and every command report (Idle included) sets it.
	LastSeen         time.Time
	TokenUpdateTally int
	// HasBootstrapToken reports whether the device (of a user channel:
	// its device) has escrowed a bootstrap token.
	HasBootstrapToken bool
}

// EnrollmentQuery selects enrollments. Zero fields select everything.
type EnrollmentQuery struct {
	// IDs, if not empty, keeps only these enrollment IDs; malformed or
	// unknown ones are simply not found.
	IDs []string
	// SerialNumber keeps the channels of the device with this serial.
	SerialNumber string
	// Type keeps one channel type (mdm.EnrollType.String()).
	Type string
	// Enabled, if set, keeps enabled (true) or disabled (false) channels.
	Enabled *bool
	// LastSeenBefore and LastSeenAfter, if not zero, keep channels last
	// seen strictly before or strictly after the time.
	LastSeenBefore time.Time
	LastSeenAfter  time.Time

	// After is the cursor: only IDs bytewise greater than it. Empty
	// starts at the beginning.
	After string
	// Limit is the most enrollments returned; 0 or less means
	// DefaultInspectLimit.
	Limit int
}

// QueuedCommand is one outstanding command of an enrollment's queue.
type QueuedCommand struct {
	CommandUUID string
	RequestType string
	// EnqueuedAt is when the command was queued for the enrollment.
	EnqueuedAt time.Time
	// Status is "" for a command the device has not answered yet and
	// mdm.StatusNotNow after a NotNow report.
	Status string
	// NotNowCount counts NotNow reports; NotNowAt is the first one's
	// time (zero without one).
	NotNowCount int
	NotNowAt    time.Time
	// Cursor is the position of the command in the queue; pass it to
	// RetrieveQueue to continue after it. Its form is the backend's own.
	Cursor string
}

// CommandResult is the latest report of one enrollment for a command.
type CommandResult struct {
	// ID is the enrollment that reported.
	ID string
	// Status is the report's Status, such as Acknowledged or NotNow.
	Status string
	// Raw is the report as the device sent it; nil when statusOnly was
	// asked for.
	Raw []byte
}

// DefaultInspectLimit is the page size of the inspection reads when the
// caller gives none.
const DefaultInspectLimit = 100

// EnrollmentLister lists enrollments for operators.
type EnrollmentLister interface {
	// RetrieveEnrollments returns at most q.Limit enrollments that match
	// every filter of q and whose IDs are greater than q.After, in
	// bytewise ID order. Channels that never sent a TokenUpdate are not
	// enrollments. No match is an empty result, not an error.
	RetrieveEnrollments(ctx context.Context, q *EnrollmentQuery) ([]Enrollment, error)
}

// QueueLister shows the command queue of an enrollment.
type QueueLister interface {
	// RetrieveQueue returns at most limit outstanding commands of
	// enrollment id (not yet answered, or answered NotNow), in the order
	// RetrieveNextCommand would send them without skipping NotNow,
	// starting after the command whose Cursor is cursor (empty: from the
	// start). It returns ErrUnknownEnrollment for an ID that names no
	// enrollment; an enrollment with an empty queue gives an empty
	// result.
	RetrieveQueue(ctx context.Context, id, cursor string, limit int) ([]QueuedCommand, error)
}

// CommandResultLister shows what enrollments answered to a command.
type CommandResultLister interface {
	// RetrieveCommandResults returns at most limit results of command
	// uuid, one per enrollment that reported on it (its latest report:
	// NotNow while the command stays queued, then the final one), in
	// bytewise enrollment ID order, starting after enrollment ID after.
	// With statusOnly set, Raw is left nil. An unknown command, or one no
	// enrollment answered, gives an empty result. A backend that deletes
	// finished commands (the SQL backends' delete=1) keeps results only
	// while their command is queued, that is NotNow results.
	RetrieveCommandResults(ctx context.Context, uuid, after string, limit int, statusOnly bool) ([]CommandResult, error)
}

// InspectionStore is what the inspection API reads.
type InspectionStore interface {
	EnrollmentLister
	QueueLister
	CommandResultLister
}

// PageSize returns q.Limit, or DefaultInspectLimit when it is not set.
func (q *EnrollmentQuery) PageSize() int {
	if q.Limit <= 0 {
		return DefaultInspectLimit
	}
	return q.Limit
}

// Matches reports whether e passes the filters of q other than IDs and
// After, which a backend applies while choosing what to look at. It is
// for backends that filter in Go rather than in a query language.
func (q *EnrollmentQuery) Matches(e *Enrollment) bool {
	switch {
	case q.SerialNumber != "" && e.SerialNumber != q.SerialNumber,
		q.Type != "" && e.Type != q.Type,
		q.Enabled != nil && e.Enabled != *q.Enabled,
		!q.LastSeenBefore.IsZero() && !e.LastSeen.Before(q.LastSeenBefore),
		!q.LastSeenAfter.IsZero() && !e.LastSeen.After(q.LastSeenAfter):
		return false
	}
	return true
}
