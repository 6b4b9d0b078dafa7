// Package nanomdm is the core MDM service: it turns check-ins and command
// reports into storage calls and answers devices with their next command.
package nanomdm

import (
	"errors"
	"fmt"

	"github.com/nanomdm/nanomdm/log"
	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/service"
	"github.com/nanomdm/nanomdm/storage"
)

// DeclarativeManagement answers DeclarativeManagement check-ins.
type DeclarativeManagement interface {
	DeclarativeManagement(r *mdm.Request, msg *mdm.DeclarativeManagement) ([]byte, error)
}

// GetToken answers GetToken check-ins of one TokenServiceType.
type GetToken interface {
	GetToken(r *mdm.Request, msg *mdm.GetToken) (*mdm.GetTokenResponse, error)
}

// Service is the core MDM service.
type Service struct {
	store     storage.ServiceStore
	logger    log.Logger
	dm        DeclarativeManagement
	getTokens map[string]GetToken
	uaZLDC    bool
}

// Option configures a Service.
type Option func(*Service)

// WithLogger sets the logger.
func WithLogger(l log.Logger) Option { return func(s *Service) { s.logger = l } }

// WithDeclarativeManagement sets the handler of DeclarativeManagement
// check-ins; without one they fail.
func WithDeclarativeManagement(dm DeclarativeManagement) Option {
	return func(s *Service) { s.dm = dm }
}

// WithGetToken registers the handler for one TokenServiceType.
func WithGetToken(serviceType string, h GetToken) Option {
	return func(s *Service) { s.getTokens[serviceType] = h }
}

// WithUserAuthenticateZeroLengthDigestChallenge answers a first
// UserAuthenticate with an empty DigestChallenge instead of declining it.
func WithUserAuthenticateZeroLengthDigestChallenge() Option {
	return func(s *Service) { s.uaZLDC = true }
}

// New returns the core service over store.
func New(store storage.ServiceStore, opts ...Option) *Service {
	s := &Service{store: store, logger: log.Nop, getTokens: map[string]GetToken{}}
	for _, o := range opts {
		o(s)
	}
	return s
}

func (s *Service) log(r *mdm.Request) log.Logger { return log.From(r.Context, s.logger) }

// Checkin implements service.Checkin: it answers each check-in message
// type, wrapping an error with the type it arose from. A msg of no
// check-in type is refused with service.UnrecognizedCheckin.
func (s *Service) Checkin(r *mdm.Request, msg any) ([]byte, error) {
	switch m := msg.(type) {
	case *mdm.Authenticate:
		return nil, wrap("authenticate", s.authenticate(r, m))
	case *mdm.TokenUpdate:
		return nil, wrap("token update", s.tokenUpdate(r, m))
	case *mdm.CheckOut:
		return nil, wrap("check-out", s.checkOut(r, m))
	case *mdm.UserAuthenticate:
		body, err := s.userAuthenticate(r, m)
		return body, wrap("user authenticate", err)
	case *mdm.SetBootstrapToken:
		return nil, wrap("set bootstrap token", s.setBootstrapToken(r, m))
	case *mdm.GetBootstrapToken:
		body, err := s.getBootstrapToken(r, m)
		return body, wrap("get bootstrap token", err)
	case *mdm.DeclarativeManagement:
		body, err := s.declarativeManagement(r, m)
		return body, wrap("declarative management", err)
	case *mdm.GetToken:
		body, err := s.getToken(r, m)
		return body, wrap("get token", err)
	}
	return nil, service.UnrecognizedCheckin(msg)
}

func wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

// authenticate stores the device and resets its enrollment.
func (s *Service) authenticate(r *mdm.Request, msg *mdm.Authenticate) error {
	if r.EnrollID.Type != mdm.Device && r.EnrollID.Type != mdm.UserEnrollmentDevice {
		return fmt.Errorf("%w: Authenticate on a user channel", mdm.ErrInvalidEnrollment)
	}
	s.log(r).Info("msg", "authenticate", "serial_number", msg.SerialNumber)
	return s.store.StoreAuthenticate(r, msg)
}

// tokenUpdate stores push data and enables the channel.
func (s *Service) tokenUpdate(r *mdm.Request, msg *mdm.TokenUpdate) error {
	s.log(r).Info("msg", "token update")
	return s.store.StoreTokenUpdate(r, msg)
}

// checkOut disables the device channel.
func (s *Service) checkOut(r *mdm.Request, _ *mdm.CheckOut) error {
	s.log(r).Info("msg", "check-out")
	return s.store.Disable(r)
}

type digestChallenge struct {
	DigestChallenge string
}

// userAuthenticate declines by default; when configured it answers the
// first message with an empty digest challenge and accepts the second.
func (s *Service) userAuthenticate(r *mdm.Request, msg *mdm.UserAuthenticate) ([]byte, error) {
	logger := s.log(r)
	if msg.DigestResponse != "" {
		logger.Info("msg", "user authenticate", "stage", "digest response")
		return nil, s.store.StoreUserAuthenticate(r, msg)
	}
	if !s.uaZLDC {
		logger.Info("msg", "user authenticate declined")
		return nil, service.ErrDeclined
	}
	logger.Info("msg", "user authenticate", "stage", "digest challenge")
	if err := s.store.StoreUserAuthenticate(r, msg); err != nil {
		return nil, err
	}
	return mdm.EncodePlist(&digestChallenge{})
}

// setBootstrapToken escrows (or clears) the device's bootstrap token.
func (s *Service) setBootstrapToken(r *mdm.Request, msg *mdm.SetBootstrapToken) error {
	s.log(r).Info("msg", "set bootstrap token", "empty", len(msg.BootstrapToken.BootstrapToken) == 0)
	return s.store.StoreBootstrapToken(r, msg)
}

// getBootstrapToken answers with the escrowed token, or with nothing when
// there is none.
func (s *Service) getBootstrapToken(r *mdm.Request, msg *mdm.GetBootstrapToken) ([]byte, error) {
	s.log(r).Info("msg", "get bootstrap token")
	tok, err := s.store.RetrieveBootstrapToken(r, msg)
	if err != nil || tok == nil {
		return nil, err
	}
	return mdm.EncodePlist(tok)
}

// declarativeManagement hands the message to the configured handler.
func (s *Service) declarativeManagement(r *mdm.Request, msg *mdm.DeclarativeManagement) ([]byte, error) {
	s.log(r).Info("msg", "declarative management", "endpoint", msg.Endpoint)
	if s.dm == nil {
		return nil, fmt.Errorf("%w: no handler configured", service.ErrNotSupported)
	}
	return s.dm.DeclarativeManagement(r, msg)
}

// getToken hands the message to the handler of its TokenServiceType and
// answers with its response, or with nothing when it has none.
func (s *Service) getToken(r *mdm.Request, msg *mdm.GetToken) ([]byte, error) {
	s.log(r).Info("msg", "get token", "token_service_type", msg.TokenServiceType)
	h, ok := s.getTokens[msg.TokenServiceType]
	if !ok {
		return nil, fmt.Errorf("%w: no handler for token service type %q", service.ErrNotSupported, msg.TokenServiceType)
	}
	resp, err := h.GetToken(r, msg)
	if err != nil || resp == nil {
		return nil, err
	}
	return mdm.EncodePlist(resp)
}

// CommandAndReportResults stores the report and returns the next command.
// A report for a command the enrollment does not have queued is dropped
// (logged) so that the device is never wedged by it.
func (s *Service) CommandAndReportResults(r *mdm.Request, results *mdm.CommandResults) (*mdm.Command, error) {
	logger := s.log(r)
	err := s.store.StoreCommandReport(r, results)
	switch {
	case errors.Is(err, storage.ErrUnknownCommand):
		logger.Info("msg", "dropped report for unknown command",
			"command_uuid", results.CommandUUID, "status", results.Status,
			"request_type", results.RequestType)
	case err != nil:
		return nil, fmt.Errorf("storing command report: %w", err)
	}
	if results.Status != mdm.StatusIdle {
		logger.Info("msg", "command report", "command_uuid", results.CommandUUID,
			"status", results.Status, "request_type", results.RequestType)
	}
	cmd, err := s.store.RetrieveNextCommand(r, results.Status == mdm.StatusNotNow)
	if err != nil {
		return nil, fmt.Errorf("retrieving next command: %w", err)
	}
	if cmd != nil {
		logger.Debug("msg", "next command", "command_uuid", cmd.CommandUUID, "request_type", cmd.Command.RequestType)
	}
	return cmd, nil
}
