package storage

import (
	"context"
	"crypto/x509"
	"time"
)

// RecentResult is one of an enrollment's latest command reports.
type RecentResult struct {
	CommandUUID string
	// RequestType is the command's, "" when the command is no longer
	// stored.
	RequestType string
	// Status is the report's Status, such as Acknowledged or NotNow.
	Status string
	// At is when the report was stored.
	At time.Time
	// Raw is the report as the device sent it.
	Raw []byte
}

// EnrollmentDetailer gives what the page of one enrollment shows beyond
// its list row.
type EnrollmentDetailer interface {
	// RetrieveIdentityCert returns the identity certificate the device
	// (of a user channel: its device) sent its latest Authenticate with.
	// It returns nil and no error when none is stored: an unknown or
	// malformed ID, or an Authenticate that came without a certificate.
	RetrieveIdentityCert(ctx context.Context, id string) (*x509.Certificate, error)

	// RetrieveRecentResults returns the latest report of at most n
	// commands enrollment id answered (a final status, or NotNow while
	// queued), newest first, ties in bytewise CommandUUID order; n of 0
	// or less means DefaultInspectLimit. An unknown or malformed ID, or
	// none answered, gives an empty result.
	// A backend that deletes finished commands (the SQL backends'
	// delete=1) keeps NotNow results only.
	RetrieveRecentResults(ctx context.Context, id string, n int) ([]RecentResult, error)
}

// QueuedCommandRemover takes one command off one queue, for operators.
type QueuedCommandRemover interface {
	// RemoveQueuedCommand takes command uuid off the queue of enrollment
	// id alone (not its user channels, nor other enrollments the command
	// is queued for); a NotNow command is removed too. It returns
	// ErrUnknownEnrollment for an ID (malformed included) that names no
	// enrollment, and ErrUnknownCommand when uuid is not outstanding in
	// its queue (never queued, answered or removed already).
	RemoveQueuedCommand(ctx context.Context, id, uuid string) error
}
