package storagetest

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/storage"
)

// Channel is a simulated MDM channel, a device or a user on one, with
// random identifiers. It builds the check-in messages and command reports a
// real device would send, as real plist bytes decoded by package mdm, so
// every message carries genuine Raw bytes.
type Channel struct {
	// Enrollment holds the channel keys every message carries.
	Enrollment mdm.Enrollment
	// EnrollID is the resolved channel, as the HTTP layer would build it.
	EnrollID *mdm.EnrollID

	Topic        string
	PushMagic    string
	Token        []byte
	SerialNumber string
	// UnlockToken, if set, is sent with every TokenUpdate.
	UnlockToken []byte
	// Certificate is put into every Request.
	Certificate *x509.Certificate
	// Binary makes check-in messages and reports binary plists.
	Binary bool

	parent *Channel
}

// RandomUUID returns a random upper-case UUID-shaped string, the form of
// UDIDs and CommandUUIDs.
func RandomUUID() string {
	var b [16]byte
	rand.Read(b[:])
	s := strings.ToUpper(hex.EncodeToString(b[:]))
	return s[:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:]
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// NewDevice returns a device channel (UDID) with a random UDID, serial
// number, push topic, push magic and token.
func NewDevice(t testing.TB) *Channel {
	t.Helper()
	c := &Channel{
		Topic:        "com.apple.mgmt.External." + RandomUUID(),
		PushMagic:    RandomUUID(),
		Token:        randomBytes(32),
		SerialNumber: strings.ToUpper(hex.EncodeToString(randomBytes(6))),
	}
	c.Enrollment.UDID = RandomUUID()
	c.resolve(t)
	return c
}

// NewUserEnrollmentDevice returns the device channel of a User Enrollment
// (EnrollmentID) with random identifiers.
func NewUserEnrollmentDevice(t testing.TB) *Channel {
	t.Helper()
	c := NewDevice(t)
	c.Enrollment = mdm.Enrollment{EnrollmentID: RandomUUID()}
	c.resolve(t)
	return c
}

// NewUser returns a user channel on device channel c: UDID:UserID for a
// device, EnrollmentID:EnrollmentUserID for a User Enrollment.
func (c *Channel) NewUser(t testing.TB) *Channel {
	t.Helper()
	u := c.child()
	if c.Enrollment.EnrollmentID != "" {
		u.Enrollment.EnrollmentUserID = RandomUUID()
	} else {
		u.Enrollment.UserID = RandomUUID()
		u.Enrollment.UserShortName = "user" + hex.EncodeToString(randomBytes(3))
		u.Enrollment.UserLongName = "Test User " + u.Enrollment.UserShortName
	}
	u.resolve(t)
	return u
}

// NewSharediPadUser returns a Shared iPad user channel (UDID:ShortName) on
// device channel c, with a random short name.
func (c *Channel) NewSharediPadUser(t testing.TB) *Channel {
	t.Helper()
	u := c.child()
	u.Enrollment.UserID = mdm.SharediPadUserID
	u.Enrollment.UserShortName = "student" + hex.EncodeToString(randomBytes(3))
	u.resolve(t)
	return u
}

func (c *Channel) child() *Channel {
	if c.parent != nil {
		panic("storagetest: user channels have no users")
	}
	return &Channel{
		Enrollment: mdm.Enrollment{
			UDID:         c.Enrollment.UDID,
			EnrollmentID: c.Enrollment.EnrollmentID,
		},
		Topic:     c.Topic,
		PushMagic: RandomUUID(),
		Token:     randomBytes(32),
		Binary:    c.Binary,
		parent:    c,
	}
}

func (c *Channel) resolve(t testing.TB) {
	t.Helper()
	id, err := c.Enrollment.Resolve()
	if err != nil {
		t.Fatalf("resolving test channel %+v: %v", c.Enrollment, err)
	}
	c.EnrollID = id
}

// ID returns the enrollment ID of the channel.
func (c *Channel) ID() string { return c.EnrollID.ID }

// Parent returns the device channel of a user channel, or nil.
func (c *Channel) Parent() *Channel { return c.parent }

// Request returns a request on this channel, as the HTTP layer would make.
func (c *Channel) Request() *mdm.Request {
	id := *c.EnrollID
	return &mdm.Request{
		Context:     context.Background(),
		EnrollID:    &id,
		Certificate: c.Certificate,
	}
}

// keys returns the channel keys as plist dictionary entries.
func (c *Channel) keys(messageType string) map[string]any {
	m := map[string]any{}
	if messageType != "" {
		m["MessageType"] = messageType
	}
	e := c.Enrollment
	for k, v := range map[string]string{
		"UDID":             e.UDID,
		"UserID":           e.UserID,
		"UserShortName":    e.UserShortName,
		"UserLongName":     e.UserLongName,
		"EnrollmentID":     e.EnrollmentID,
		"EnrollmentUserID": e.EnrollmentUserID,
	} {
		if v != "" {
			m[k] = v
		}
	}
	return m
}

// encode turns a plist dictionary into raw bytes, XML or binary.
func (c *Channel) encode(t testing.TB, m map[string]any) []byte {
	t.Helper()
	var raw []byte
	var err error
	if c.Binary {
		raw, err = EncodeBinaryPlist(m)
	} else {
		raw, err = mdm.EncodePlist(m)
	}
	if err != nil {
		t.Fatalf("encoding test message: %v", err)
	}
	return raw
}

func (c *Channel) checkin(t testing.TB, m map[string]any) any {
	t.Helper()
	msg, err := mdm.DecodeCheckin(c.encode(t, m))
	if err != nil {
		t.Fatalf("decoding test %v message: %v", m["MessageType"], err)
	}
	return msg
}

// Authenticate returns an Authenticate message of device channel c.
func (c *Channel) Authenticate(t testing.TB) *mdm.Authenticate {
	t.Helper()
	if c.parent != nil {
		t.Fatalf("Authenticate on user channel %s", c.ID())
	}
	m := c.keys(mdm.MessageAuthenticate)
	m["Topic"] = c.Topic
	m["SerialNumber"] = c.SerialNumber
	m["Model"] = "iPad13,1"
	m["ModelName"] = "iPad"
	m["ProductName"] = "iPad13,1"
	m["DeviceName"] = "Test iPad " + c.SerialNumber
	m["OSVersion"] = "17.5"
	m["BuildVersion"] = "21F79"
	return c.checkin(t, m).(*mdm.Authenticate)
}

// TokenUpdate returns a TokenUpdate message carrying the channel's current
// push data (and UnlockToken, if set).
func (c *Channel) TokenUpdate(t testing.TB) *mdm.TokenUpdate {
	t.Helper()
	m := c.keys(mdm.MessageTokenUpdate)
	m["Topic"] = c.Topic
	m["PushMagic"] = c.PushMagic
	m["Token"] = c.Token
	if len(c.UnlockToken) > 0 {
		m["UnlockToken"] = c.UnlockToken
	}
	return c.checkin(t, m).(*mdm.TokenUpdate)
}

// UserAuthenticate returns a UserAuthenticate message; digestResponse is
// empty for the first message of the exchange.
func (c *Channel) UserAuthenticate(t testing.TB, digestResponse string) *mdm.UserAuthenticate {
	t.Helper()
	m := c.keys(mdm.MessageUserAuthenticate)
	if digestResponse != "" {
		m["DigestResponse"] = digestResponse
	}
	return c.checkin(t, m).(*mdm.UserAuthenticate)
}

// SetBootstrapToken returns a SetBootstrapToken message escrowing token
// (clearing it when empty).
func (c *Channel) SetBootstrapToken(t testing.TB, token []byte) *mdm.SetBootstrapToken {
	t.Helper()
	m := c.keys(mdm.MessageSetBootstrapToken)
	m["BootstrapToken"] = token
	if token == nil {
		m["BootstrapToken"] = []byte{}
	}
	return c.checkin(t, m).(*mdm.SetBootstrapToken)
}

// GetBootstrapToken returns a GetBootstrapToken message.
func (c *Channel) GetBootstrapToken(t testing.TB) *mdm.GetBootstrapToken {
	t.Helper()
	return c.checkin(t, c.keys(mdm.MessageGetBootstrapToken)).(*mdm.GetBootstrapToken)
}

// Report returns a command report with the given status for commandUUID.
// Error reports carry an ErrorChain.
func (c *Channel) Report(t testing.TB, status, commandUUID string) *mdm.CommandResults {
	t.Helper()
	m := c.keys("")
	m["Status"] = status
	if commandUUID != "" {
		m["CommandUUID"] = commandUUID
	}
	if status == mdm.StatusError {
		m["ErrorChain"] = []any{map[string]any{
			"ErrorCode":            12021,
			"ErrorDomain":          "MCMDMErrorDomain",
			"LocalizedDescription": "Test failure",
		}}
	}
	raw := c.encode(t, m)
	rep, err := mdm.DecodeCommandResults(raw)
	if err != nil {
		t.Fatalf("decoding test report: %v", err)
	}
	return rep
}

// Idle returns an Idle report.
func (c *Channel) Idle(t testing.TB) *mdm.CommandResults {
	t.Helper()
	return c.Report(t, mdm.StatusIdle, "")
}

// Enroll stores the check-ins that enroll the channel: Authenticate then
// TokenUpdate for a device channel, TokenUpdate for a user channel.
func (c *Channel) Enroll(t testing.TB, s storage.CheckinStore) {
	t.Helper()
	if c.parent == nil {
		if err := s.StoreAuthenticate(c.Request(), c.Authenticate(t)); err != nil {
			t.Fatalf("authenticate %s: %v", c.ID(), err)
		}
	}
	if err := s.StoreTokenUpdate(c.Request(), c.TokenUpdate(t)); err != nil {
		t.Fatalf("token update %s: %v", c.ID(), err)
	}
}

// NewCommand returns a command of requestType with a random CommandUUID,
// encoded as an XML plist.
func NewCommand(t testing.TB, requestType string) *mdm.Command {
	t.Helper()
	cmd, err := mdm.NewCommand(RandomUUID(), requestType, nil)
	if err != nil {
		t.Fatalf("building %s command: %v", requestType, err)
	}
	return cmd
}

// NewBinaryCommand returns a command like NewCommand, encoded as a binary
// plist with a data payload, so its raw bytes are not valid UTF-8.
func NewBinaryCommand(t testing.TB, requestType string) *mdm.Command {
	t.Helper()
	uuid := RandomUUID()
	raw, err := EncodeBinaryPlist(map[string]any{
		"CommandUUID": uuid,
		"Command": map[string]any{
			"RequestType": requestType,
			"Payload":     append([]byte{0xff, 0xfe, 0x00}, randomBytes(64)...),
		},
	})
	if err != nil {
		t.Fatalf("encoding binary command: %v", err)
	}
	cmd, err := mdm.DecodeCommand(raw)
	if err != nil {
		t.Fatalf("decoding binary command: %v", err)
	}
	return cmd
}

// String describes the channel for failure messages.
func (c *Channel) String() string {
	return fmt.Sprintf("%s (%v)", c.ID(), c.EnrollID.Type)
}
