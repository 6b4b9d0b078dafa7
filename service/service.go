// Package service defines the MDM service interfaces that sit between the
// HTTP handlers and storage. Each implementation (the core nanomdm service,
// certauth, webhook, dump, multi) is one link of a chain built in cmd.
package service

import (
	"errors"
	"fmt"

	"github.com/nanomdm/nanomdm/mdm"
)

// Checkin handles check-in messages.
type Checkin interface {
	Authenticate(r *mdm.Request, msg *mdm.Authenticate) error
	TokenUpdate(r *mdm.Request, msg *mdm.TokenUpdate) error
	CheckOut(r *mdm.Request, msg *mdm.CheckOut) error
	// UserAuthenticate returns the body to answer with (a digest
	// challenge) or an error wrapping ErrDeclined.
	UserAuthenticate(r *mdm.Request, msg *mdm.UserAuthenticate) ([]byte, error)
	SetBootstrapToken(r *mdm.Request, msg *mdm.SetBootstrapToken) error
	// GetBootstrapToken returns nil and no error when there is no token.
	GetBootstrapToken(r *mdm.Request, msg *mdm.GetBootstrapToken) (*mdm.BootstrapToken, error)
	DeclarativeManagement(r *mdm.Request, msg *mdm.DeclarativeManagement) ([]byte, error)
	GetToken(r *mdm.Request, msg *mdm.GetToken) (*mdm.GetTokenResponse, error)
}

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

// CheckinRequest dispatches a decoded check-in message to svc and returns
// the body to answer the device with (nil for an empty answer).
func CheckinRequest(svc Checkin, r *mdm.Request, msg any) ([]byte, error) {
	switch m := msg.(type) {
	case *mdm.Authenticate:
		return nil, wrap("authenticate", svc.Authenticate(r, m))
	case *mdm.TokenUpdate:
		return nil, wrap("token update", svc.TokenUpdate(r, m))
	case *mdm.CheckOut:
		return nil, wrap("check-out", svc.CheckOut(r, m))
	case *mdm.UserAuthenticate:
		body, err := svc.UserAuthenticate(r, m)
		return body, wrap("user authenticate", err)
	case *mdm.SetBootstrapToken:
		return nil, wrap("set bootstrap token", svc.SetBootstrapToken(r, m))
	case *mdm.GetBootstrapToken:
		tok, err := svc.GetBootstrapToken(r, m)
		if err != nil || tok == nil {
			return nil, wrap("get bootstrap token", err)
		}
		body, err := mdm.EncodePlist(tok)
		return body, wrap("get bootstrap token", err)
	case *mdm.DeclarativeManagement:
		body, err := svc.DeclarativeManagement(r, m)
		return body, wrap("declarative management", err)
	case *mdm.GetToken:
		resp, err := svc.GetToken(r, m)
		if err != nil || resp == nil {
			return nil, wrap("get token", err)
		}
		body, err := mdm.EncodePlist(resp)
		return body, wrap("get token", err)
	}
	return nil, fmt.Errorf("%w: check-in of type %T", mdm.ErrUnrecognizedMessageType, msg)
}

func wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}
