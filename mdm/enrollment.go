// Package mdm models the Apple MDM protocol: the check-in messages and
// command reports a device sends, the commands an operator enqueues, and the
// enrollment IDs that name each MDM channel. It decodes untrusted plists
// (XML or binary) and keeps every message's raw bytes.
package mdm

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// EnrollType is the kind of MDM channel a message arrives on.
type EnrollType int

// The channel types, named as in Apple's documentation.
const (
	_ EnrollType = iota
	Device
	User
	UserEnrollmentDevice
	UserEnrollment
	SharediPad
)

var enrollTypeNames = map[EnrollType]string{
	Device:               "Device",
	User:                 "User",
	UserEnrollmentDevice: "User Enrollment (Device)",
	UserEnrollment:       "User Enrollment",
	SharediPad:           "Shared iPad",
}

// String returns the human name of the type, as used in webhook events.
func (t EnrollType) String() string {
	if s, ok := enrollTypeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("EnrollType(%d)", int(t))
}

// ParseEnrollType is the inverse of String; unknown names return 0 and false.
func ParseEnrollType(s string) (EnrollType, bool) {
	for t, name := range enrollTypeNames {
		if name == s {
			return t, true
		}
	}
	return 0, false
}

// IsUserChannel reports whether the type names a user channel, one with a
// parent device channel.
func (t EnrollType) IsUserChannel() bool {
	return t == User || t == UserEnrollment || t == SharediPad
}

// SharediPadUserID is the UserID a Shared iPad sends for its users; those
// channels are named by UserShortName instead.
const SharediPadUserID = "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF"

// MaxIDLength bounds each part of an enrollment ID, in bytes.
const MaxIDLength = 255

// Enrollment holds the channel-identifying keys shared by every check-in
// message and command report.
type Enrollment struct {
	UDID             string `plist:",omitempty"`
	UserID           string `plist:",omitempty"`
	UserShortName    string `plist:",omitempty"`
	UserLongName     string `plist:",omitempty"`
	EnrollmentID     string `plist:",omitempty"`
	EnrollmentUserID string `plist:",omitempty"`
}

// EnrollID is the resolved identity of an MDM channel: its type, our single
// enrollment ID string, and for user channels the parent device-channel ID.
type EnrollID struct {
	Type     EnrollType
	ID       string
	ParentID string
}

// Validate reports whether the ID is well formed.
func (e *EnrollID) Validate() error {
	if e == nil || e.ID == "" {
		return ErrInvalidEnrollment
	}
	return nil
}

// ErrInvalidEnrollment means a message carries no channel identifiers.
var ErrInvalidEnrollment = errors.New("invalid enrollment")

// ErrInvalidID means a channel identifier is unsafe or malformed (empty,
// too long, path separators, control characters, "." or "..").
var ErrInvalidID = errors.New("invalid enrollment id")

// ValidateIDPart checks one channel identifier (a UDID, UserID, short name
// or enrollment ID) before it becomes part of an enrollment ID.
func ValidateIDPart(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: empty", ErrInvalidID)
	case len(s) > MaxIDLength:
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalidID, MaxIDLength)
	case s == "." || s == "..":
		return fmt.Errorf("%w: %q", ErrInvalidID, s)
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: not UTF-8", ErrInvalidID)
	}
	for _, r := range s {
		if r == '/' || r == '\\' || unicode.IsControl(r) {
			return fmt.Errorf("%w: contains %q", ErrInvalidID, r)
		}
	}
	return nil
}

// ValidateEnrollmentID checks a full enrollment ID as it arrives from the
// API: one or two valid parts joined by a single colon.
func ValidateEnrollmentID(id string) error {
	parts := strings.SplitN(id, ":", 2)
	for _, p := range parts {
		if err := ValidateIDPart(p); err != nil {
			return err
		}
	}
	return nil
}

// Resolve turns the channel keys into an EnrollID, following Apple's rules:
// UDID alone is a device channel, UDID+UserID a user channel (Shared iPad
// users, whose UserID is SharediPadUserID, are named by short name),
// EnrollmentID a User Enrollment device channel and EnrollmentID plus
// EnrollmentUserID its user channel. It returns ErrInvalidEnrollment when no
// keys are present and an error wrapping ErrInvalidID for unsafe values.
func (e *Enrollment) Resolve() (*EnrollID, error) {
	var id EnrollID
	var parts []string
	switch {
	case e.UDID != "" && e.UserID == SharediPadUserID:
		id.Type, parts = SharediPad, []string{e.UDID, e.UserShortName}
	case e.UDID != "" && e.UserID != "":
		id.Type, parts = User, []string{e.UDID, e.UserID}
	case e.UDID != "":
		id.Type, parts = Device, []string{e.UDID}
	case e.EnrollmentID != "" && e.EnrollmentUserID != "":
		id.Type, parts = UserEnrollment, []string{e.EnrollmentID, e.EnrollmentUserID}
	case e.EnrollmentID != "":
		id.Type, parts = UserEnrollmentDevice, []string{e.EnrollmentID}
	default:
		return nil, ErrInvalidEnrollment
	}
	for _, p := range parts {
		if err := ValidateIDPart(p); err != nil {
			return nil, err
		}
	}
	if strings.Contains(parts[0], ":") {
		return nil, fmt.Errorf("%w: device identifier contains ':'", ErrInvalidID)
	}
	id.ID = strings.Join(parts, ":")
	if len(parts) == 2 {
		id.ParentID = parts[0]
	}
	return &id, nil
}
