package mdm

import (
	"errors"
	"fmt"

	"github.com/groob/plist"
)

// Raw holds the exact bytes a message arrived as.
type Raw []byte

// Check-in message types (the MessageType key).
const (
	MessageAuthenticate          = "Authenticate"
	MessageTokenUpdate           = "TokenUpdate"
	MessageCheckOut              = "CheckOut"
	MessageUserAuthenticate      = "UserAuthenticate"
	MessageSetBootstrapToken     = "SetBootstrapToken"
	MessageGetBootstrapToken     = "GetBootstrapToken"
	MessageDeclarativeManagement = "DeclarativeManagement"
	MessageGetToken              = "GetToken"
)

// ErrUnrecognizedMessageType means a check-in's MessageType is missing or
// not one we know.
var ErrUnrecognizedMessageType = errors.New("unrecognized MessageType")

// ErrDecode wraps every failure to parse untrusted plist bytes.
var ErrDecode = errors.New("decoding plist")

// MessageType is the part every check-in message shares.
type MessageType struct {
	MessageType string
}

// Authenticate is the first check-in message of an enrollment (Apple:
// "Authenticate").
type Authenticate struct {
	Enrollment
	MessageType
	Topic        string
	BuildVersion string `plist:",omitempty"`
	DeviceName   string `plist:",omitempty"`
	Model        string `plist:",omitempty"`
	ModelName    string `plist:",omitempty"`
	OSVersion    string `plist:",omitempty"`
	ProductName  string `plist:",omitempty"`
	SerialNumber string `plist:",omitempty"`
	IMEI         string `plist:",omitempty"`
	MEID         string `plist:",omitempty"`
	Raw          `plist:"-"`
}

// Push is the push-notification data of a TokenUpdate: what APNs needs to
// wake the channel.
type Push struct {
	PushMagic string
	Token     []byte
	Topic     string
}

// TokenUpdate delivers (or renews) a channel's push token (Apple:
// "TokenUpdate").
type TokenUpdate struct {
	Enrollment
	MessageType
	Push
	UnlockToken           []byte `plist:",omitempty"`
	AwaitingConfiguration bool   `plist:",omitempty"`
	NotOnConsole          bool   `plist:",omitempty"`
	Raw                   `plist:"-"`
}

// CheckOut announces that the device left MDM (Apple: "CheckOut").
type CheckOut struct {
	Enrollment
	MessageType
	Topic string `plist:",omitempty"`
	Raw   `plist:"-"`
}

// UserAuthenticate asks to create a user channel (Apple:
// "UserAuthenticate"). The second message of the exchange carries a
// DigestResponse.
type UserAuthenticate struct {
	Enrollment
	MessageType
	DigestResponse string `plist:",omitempty"`
	Raw            `plist:"-"`
}

// BootstrapToken is the token a device escrows and later asks back.
type BootstrapToken struct {
	BootstrapToken []byte
}

// SetBootstrapToken escrows (or, empty, clears) a bootstrap token (Apple:
// "SetBootstrapToken").
type SetBootstrapToken struct {
	Enrollment
	MessageType
	BootstrapToken
	AwaitingConfiguration bool `plist:",omitempty"`
	Raw                   `plist:"-"`
}

// GetBootstrapToken asks for the escrowed bootstrap token (Apple:
// "GetBootstrapToken").
type GetBootstrapToken struct {
	Enrollment
	MessageType
	AwaitingConfiguration bool `plist:",omitempty"`
	Raw                   `plist:"-"`
}

// DeclarativeManagement carries a declarative-management request (Apple:
// "DeclarativeManagement").
type DeclarativeManagement struct {
	Enrollment
	MessageType
	Endpoint string
	Data     []byte `plist:",omitempty"`
	Raw      `plist:"-"`
}

// GetToken asks the server for a token of a given service type (Apple:
// "GetToken").
type GetToken struct {
	Enrollment
	MessageType
	TokenServiceType string
	TokenParameters  map[string]any `plist:",omitempty"`
	Raw              `plist:"-"`
}

// GetTokenResponse is the answer to GetToken.
type GetTokenResponse struct {
	TokenData []byte
}

// decodePlist checks data against our input bounds and then decodes it.
func decodePlist(data []byte, v any) error {
	if len(data) == 0 {
		return fmt.Errorf("%w: empty body", ErrDecode)
	}
	if err := checkBounds(data); err != nil {
		return fmt.Errorf("%w: %w", ErrDecode, err)
	}
	if err := plist.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%w: %w", ErrDecode, err)
	}
	return nil
}

// DecodePlist decodes an XML or binary plist into v within the bounds
// that guard every device message (size, depth, object counts), so a
// hostile plist cannot panic the decoder or exhaust memory. Errors wrap
// ErrDecode.
func DecodePlist(data []byte, v any) error { return decodePlist(data, v) }

// DecodeCheckin decodes a check-in message into one of the message types of
// this package (as a pointer), keeping the raw bytes. Errors wrap ErrDecode
// or ErrUnrecognizedMessageType.
func DecodeCheckin(raw []byte) (any, error) {
	var mt MessageType
	if !scanMessageType(raw, &mt) {
		mt = MessageType{}
		if err := decodePlist(raw, &mt); err != nil {
			return nil, err
		}
	}
	var msg any
	switch mt.MessageType {
	case MessageAuthenticate:
		msg = &Authenticate{Raw: raw}
	case MessageTokenUpdate:
		msg = &TokenUpdate{Raw: raw}
	case MessageCheckOut:
		msg = &CheckOut{Raw: raw}
	case MessageUserAuthenticate:
		msg = &UserAuthenticate{Raw: raw}
	case MessageSetBootstrapToken:
		msg = &SetBootstrapToken{Raw: raw}
	case MessageGetBootstrapToken:
		msg = &GetBootstrapToken{Raw: raw}
	case MessageDeclarativeManagement:
		msg = &DeclarativeManagement{Raw: raw}
	case MessageGetToken:
		msg = &GetToken{Raw: raw}
	default:
		return nil, fmt.Errorf("%w: %q", ErrUnrecognizedMessageType, mt.MessageType)
	}
	// The bounds were checked above (by the scan or by decodePlist);
	// decode into the concrete type.
	if err := plist.Unmarshal(raw, msg); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDecode, err)
	}
	return msg, nil
}

// EnrollmentOf returns the channel keys of any check-in message or command
// report of this package, or nil for other values.
func EnrollmentOf(msg any) *Enrollment {
	switch m := msg.(type) {
	case *Authenticate:
		return &m.Enrollment
	case *TokenUpdate:
		return &m.Enrollment
	case *CheckOut:
		return &m.Enrollment
	case *UserAuthenticate:
		return &m.Enrollment
	case *SetBootstrapToken:
		return &m.Enrollment
	case *GetBootstrapToken:
		return &m.Enrollment
	case *DeclarativeManagement:
		return &m.Enrollment
	case *GetToken:
		return &m.Enrollment
	case *CommandResults:
		return &m.Enrollment
	}
	return nil
}

// RawOf returns the raw bytes of any message of this package, or nil.
func RawOf(msg any) []byte {
	switch m := msg.(type) {
	case *Authenticate:
		return m.Raw
	case *TokenUpdate:
		return m.Raw
	case *CheckOut:
		return m.Raw
	case *UserAuthenticate:
		return m.Raw
	case *SetBootstrapToken:
		return m.Raw
	case *GetBootstrapToken:
		return m.Raw
	case *DeclarativeManagement:
		return m.Raw
	case *GetToken:
		return m.Raw
	case *CommandResults:
		return m.Raw
	}
	return nil
}

// CheckinContentType starts the Content-Type of check-in requests; command
// reports carry another type.
const CheckinContentType = "application/x-apple-aspen-mdm-checkin"
