package mdm

import (
	"errors"
	"fmt"

	"github.com/groob/plist"
)

// Command report statuses (the Status key).
const (
	StatusIdle               = "Idle"
	StatusAcknowledged       = "Acknowledged"
	StatusError              = "Error"
	StatusCommandFormatError = "CommandFormatError"
	StatusNotNow             = "NotNow"
)

// ErrNoStatus means a command report has no Status key.
var ErrNoStatus = errors.New("command report has no Status")

// ErrorChainItem is one entry of a report's ErrorChain.
type ErrorChainItem struct {
	ErrorCode            int    `plist:",omitempty"`
	ErrorDomain          string `plist:",omitempty"`
	LocalizedDescription string `plist:",omitempty"`
	USEnglishDescription string `plist:",omitempty"`
}

// CommandResults is a command report: a device's answer to a command, or
// an Idle poll for the next one (Apple: the command response body).
type CommandResults struct {
	Enrollment
	CommandUUID string `plist:",omitempty"`
	Status      string
	RequestType string           `plist:",omitempty"`
	ErrorChain  []ErrorChainItem `plist:",omitempty"`
	Raw         `plist:"-"`
}

// DecodeCommandResults decodes a command report, keeping its raw bytes.
// Errors wrap ErrDecode or ErrNoStatus.
func DecodeCommandResults(raw []byte) (*CommandResults, error) {
	r := &CommandResults{Raw: raw}
	if !scanCommandResults(raw, r) {
		*r = CommandResults{Raw: raw}
		if err := decodePlist(raw, r); err != nil {
			return nil, err
		}
	}
	if r.Status == "" {
		return nil, ErrNoStatus
	}
	return r, nil
}

// Command is an MDM command as the operator enqueues it and the device
// receives it: a CommandUUID and a Command dictionary with a RequestType.
// The raw bytes are what we store and send.
type Command struct {
	CommandUUID string
	Command     struct {
		RequestType string
	}
	Raw `plist:"-"`
}

// MaxCommandUUIDLength bounds a command UUID, in bytes.
const MaxCommandUUIDLength = 255

// ErrInvalidCommand means a command plist lacks its CommandUUID or
// RequestType, or carries unsafe values.
var ErrInvalidCommand = errors.New("invalid command")

// DecodeCommand decodes a raw command plist and checks that it names a
// CommandUUID and a RequestType. Errors wrap ErrDecode or ErrInvalidCommand.
func DecodeCommand(raw []byte) (*Command, error) {
	c := &Command{Raw: raw}
	if err := decodePlist(raw, c); err != nil {
		return nil, err
	}
	switch {
	case c.CommandUUID == "":
		return nil, fmt.Errorf("%w: empty CommandUUID", ErrInvalidCommand)
	case c.Command.RequestType == "":
		return nil, fmt.Errorf("%w: empty RequestType", ErrInvalidCommand)
	}
	if err := ValidateIDPart(c.CommandUUID); err != nil {
		return nil, fmt.Errorf("%w: CommandUUID: %w", ErrInvalidCommand, err)
	}
	return c, nil
}

// NewCommand builds a command with the given UUID and request type and
// encodes it as an XML plist, for tests and tools. extra keys are merged
// into the Command dictionary.
func NewCommand(uuid, requestType string, extra map[string]any) (*Command, error) {
	body := map[string]any{"RequestType": requestType}
	for k, v := range extra {
		body[k] = v
	}
	raw, err := plist.Marshal(map[string]any{
		"CommandUUID": uuid,
		"Command":     body,
	})
	if err != nil {
		return nil, fmt.Errorf("encoding command: %w", err)
	}
	c := &Command{CommandUUID: uuid, Raw: raw}
	c.Command.RequestType = requestType
	return c, nil
}

// EncodePlist encodes v as an XML plist, for answers sent to devices.
func EncodePlist(v any) ([]byte, error) {
	b, err := plist.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encoding plist: %w", err)
	}
	return b, nil
}
