package mdm

import (
	"errors"
	"fmt"
	"reflect"

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
	newMsg, ok := checkinMessages[mt.MessageType]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnrecognizedMessageType, mt.MessageType)
	}
	msg := newMsg(raw)
	// The bounds were checked above (by the scan or by decodePlist);
	// decode into the concrete type.
	if err := plist.Unmarshal(raw, msg); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDecode, err)
	}
	return msg, nil
}

// checkinMessages lists every check-in message type by its MessageType,
// with a constructor of an empty message holding raw. A new check-in type
// is its struct above and one line here.
var checkinMessages = map[string]func(raw Raw) any{
	MessageAuthenticate:          func(raw Raw) any { return &Authenticate{Raw: raw} },
	MessageTokenUpdate:           func(raw Raw) any { return &TokenUpdate{Raw: raw} },
	MessageCheckOut:              func(raw Raw) any { return &CheckOut{Raw: raw} },
	MessageUserAuthenticate:      func(raw Raw) any { return &UserAuthenticate{Raw: raw} },
	MessageSetBootstrapToken:     func(raw Raw) any { return &SetBootstrapToken{Raw: raw} },
	MessageGetBootstrapToken:     func(raw Raw) any { return &GetBootstrapToken{Raw: raw} },
	MessageDeclarativeManagement: func(raw Raw) any { return &DeclarativeManagement{Raw: raw} },
	MessageGetToken:              func(raw Raw) any { return &GetToken{Raw: raw} },
}

// checkinTypeNames maps the pointer type of each check-in message to its
// MessageType.
var checkinTypeNames = func() map[reflect.Type]string {
	names := make(map[reflect.Type]string, len(checkinMessages))
	for name, newMsg := range checkinMessages {
		names[reflect.TypeOf(newMsg(nil))] = name
	}
	return names
}()

// MessageTypeOf returns the MessageType of a check-in message of this
// package (a pointer, as DecodeCheckin returns it), such as
// MessageAuthenticate, or "" for any other value. It goes by the Go type,
// not by the message's MessageType field.
func MessageTypeOf(msg any) string { return checkinTypeNames[reflect.TypeOf(msg)] }

// enrollment is implemented by every message that embeds Enrollment.
func (e *Enrollment) enrollment() *Enrollment { return e }

// raw is implemented by every message that embeds Raw.
func (r Raw) raw() []byte { return r }

// EnrollmentOf returns the channel keys of any check-in message or command
// report of this package (as a pointer), or nil for other values.
func EnrollmentOf(msg any) *Enrollment {
	if m, ok := msg.(interface{ enrollment() *Enrollment }); ok {
		return m.enrollment()
	}
	return nil
}

// RawOf returns the raw bytes of any message of this package (as a
// pointer: a check-in message, a command report or a command), or nil.
func RawOf(msg any) []byte {
	if m, ok := msg.(interface{ raw() []byte }); ok {
		return m.raw()
	}
	return nil
}

// CheckinContentType starts the Content-Type of check-in requests; command
// reports carry another type.
const CheckinContentType = "application/x-apple-aspen-mdm-checkin"
