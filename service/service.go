// Package service defines the MDM service interfaces that sit between the
// HTTP handlers and storage. Each implementation (the core nanomdm service,
// certauth, webhook, dump, multi) is one link of a chain built in cmd.
package service

import (
	"errors"
	"fmt"

	"github.com/nanomdm/nanomdm/mdm"
)

// Checkin handles check-in messages. msg is one of the check-in message
// types of package mdm, as a pointer (what mdm.DecodeCheckin returns).
// Checkin returns the body to answer the device with, nil for an empty
// answer. A link of the chain passes msg on with next.Checkin(r, msg) and
// looks at its type (mdm.MessageTypeOf or a type switch) only where it
// cares; the core service answers each type. Errors: ErrDeclined (a
// UserAuthenticate refused), ErrNotSupported, a *StatusError whose status
// and body reach the device as they are, or, for a msg of no check-in
// type, an error wrapping mdm.ErrUnrecognizedMessageType (see
// UnrecognizedCheckin).
type Checkin interface {
	Checkin(r *mdm.Request, msg any) ([]byte, error)
}

// CheckinFunc adapts a function to Checkin.
type CheckinFunc func(r *mdm.Request, msg any) ([]byte, error)

// Checkin calls f(r, msg).
func (f CheckinFunc) Checkin(r *mdm.Request, msg any) ([]byte, error) { return f(r, msg) }

// CommandAndReportResults handles command reports.
type CommandAndReportResults interface {
	// CommandAndReportResults stores the report and returns the next
	// command for the enrollment, or nil when the queue is empty.
	CommandAndReportResults(r *mdm.Request, results *mdm.CommandResults) (*mdm.Command, error)
}

// CheckinAndCommandService is a whole MDM service.
type CheckinAndCommandService interface {
	Checkin
	CommandAndReportResults
}

// ErrDeclined means the service refused the request on purpose (a
// UserAuthenticate it does not accept). Devices are answered 410.
var ErrDeclined = errors.New("declined")

// ErrNotSupported means the service does not handle this message.
var ErrNotSupported = errors.New("not supported")

// UnrecognizedCheckin returns the error for a msg that is none of the
// check-in message types: it wraps mdm.ErrUnrecognizedMessageType.
func UnrecognizedCheckin(msg any) error {
	return fmt.Errorf("%w: check-in of type %T", mdm.ErrUnrecognizedMessageType, msg)
}

// StatusError carries an HTTP status and body that must reach the device
// as they are, such as a declarative-management server's non-200 answer.
type StatusError struct {
	Status int
	Body   []byte
	Err    error
}

func (e *StatusError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("status %d: %v", e.Status, e.Err)
	}
	return fmt.Sprintf("status %d", e.Status)
}

func (e *StatusError) Unwrap() error { return e.Err }
