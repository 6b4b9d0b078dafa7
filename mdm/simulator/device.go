// Package simulator plays Apple devices against an MDM server over real
// HTTP: it mints identities from a CA, signs every request as a device
// does (Mdm-Signature, or a proxy's client-certificate header), enrolls,
// and answers commands. End-to-end tests and the load tool use it.
package simulator

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/groob/plist"

	"github.com/nanomdm/nanomdm/cryptoutil"
	"github.com/nanomdm/nanomdm/mdm"
)

// DefaultTopic is the push topic simulated devices subscribe to.
const DefaultTopic = "com.apple.mgmt.External.simulator"

// Transport sends one device request and returns status and body.
type Transport struct {
	// URL is the server's MDM endpoint, e.g. https://mdm.example.com/mdm.
	URL string
	// CheckinURL, if set, receives check-ins instead of URL.
	CheckinURL string
	// Client sends the requests; nil means a client with a 30 s timeout.
	Client *http.Client
	// CertHeader, if set, sends the identity in this header (RFC 9440
	// form) instead of signing with Mdm-Signature, as a TLS proxy would.
	CertHeader string
	// UserAgent is sent with every request.
	UserAgent string
	// SHA1Signature signs as Apple devices do, with a SHA-1 digest and no
	// signed attributes, instead of SHA-256 with attributes.
	SHA1Signature bool
}

var defaultClient = &http.Client{Timeout: 30 * time.Second}

// ErrStatus is returned for answers other than 200.
type ErrStatus struct {
	Status int
	Body   []byte
}

func (e *ErrStatus) Error() string {
	return fmt.Sprintf("server answered %d: %s", e.Status, strings.TrimSpace(string(e.Body)))
}

// StatusOf returns the HTTP status behind the error of a request: 200 for
// nil, the server's status for an *ErrStatus, and 0 when no answer came.
func StatusOf(err error) int {
	var se *ErrStatus
	switch {
	case err == nil:
		return http.StatusOK
	case errors.As(err, &se):
		return se.Status
	}
	return 0
}

// Send posts body as a device with identity id would. checkin selects the
// check-in content type (and CheckinURL when set).
func (t *Transport) Send(ctx context.Context, id *Identity, body []byte, checkin bool) ([]byte, error) {
	req, err := t.NewRequest(ctx, id, body, checkin)
	if err != nil {
		return nil, err
	}
	return do(t.Client, req, 64<<20)
}

// do sends req with client (nil: a client with a 30 s timeout) and returns
// the body of a 200 answer, at most limit bytes; another status is an
// *ErrStatus.
func do(client *http.Client, req *http.Request, limit int64) ([]byte, error) {
	if client == nil {
		client = defaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return nil, fmt.Errorf("reading answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return body, &ErrStatus{Status: resp.StatusCode, Body: body}
	}
	return body, nil
}

// NewRequest builds the request Send would post: method, content type,
// user agent, and the identity as Mdm-Signature (or CertHeader).
func (t *Transport) NewRequest(ctx context.Context, id *Identity, body []byte, checkin bool) (*http.Request, error) {
	url := t.URL
	if checkin && t.CheckinURL != "" {
		url = t.CheckinURL
	}
	method := http.MethodPost
	if checkin {
		method = http.MethodPut
	}
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if checkin {
		req.Header.Set("Content-Type", mdm.CheckinContentType)
	} else {
		req.Header.Set("Content-Type", "application/x-apple-aspen-mdm")
	}
	if t.UserAgent != "" {
		req.Header.Set("User-Agent", t.UserAgent)
	} else {
		req.Header.Set("User-Agent", "MDM/1.0 nanomdm-simulator")
	}
	if id != nil {
		if t.CertHeader != "" {
			req.Header.Set(t.CertHeader, cryptoutil.EncodeCertHeaderRFC9440(id.Cert))
		} else {
			sign := cryptoutil.SignMdmSignature
			if t.SHA1Signature {
				sign = cryptoutil.SignMdmSignatureSHA1
			}
			sig, err := sign(body, id.Cert, id.Key)
			if err != nil {
				return nil, fmt.Errorf("signing request: %w", err)
			}
			req.Header.Set("Mdm-Signature", sig)
		}
	}
	return req, nil
}

// Channel is one MDM channel of a simulated device: the device channel
// itself or a user channel. All channels of a device share its identity.
type Channel struct {
	Device     *Device
	Enrollment mdm.Enrollment
	Token      []byte
	PushMagic  string
}

// Device is a simulated Apple device.
type Device struct {
	Transport *Transport
	Identity  *Identity
	Serial    string
	Topic     string
	// Channel is the device channel.
	Channel *Channel
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// NewUDID returns a random UDID in Apple's upper-case UUID form.
func NewUDID() string {
	s := strings.ToUpper(randHex(16))
	return s[0:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:32]
}

// NewDevice returns a device with a fresh UDID and serial using identity id.
func NewDevice(t *Transport, id *Identity) *Device {
	return NewDeviceWithUDID(t, id, NewUDID())
}

// NewDeviceWithUDID returns a device with the given UDID.
func NewDeviceWithUDID(t *Transport, id *Identity, udid string) *Device {
	d := &Device{
		Transport: t,
		Identity:  id,
		Serial:    strings.ToUpper(randHex(6)),
		Topic:     DefaultTopic,
	}
	d.Channel = &Channel{Device: d, Enrollment: mdm.Enrollment{UDID: udid}}
	d.Channel.newPushData()
	return d
}

// UDID is the device's UDID.
func (d *Device) UDID() string { return d.Channel.Enrollment.UDID }

// User returns a user channel of the device for userID (and short name).
func (d *Device) User(userID, shortName string) *Channel {
	c := &Channel{Device: d, Enrollment: mdm.Enrollment{
		UDID: d.UDID(), UserID: userID, UserShortName: shortName, UserLongName: shortName,
	}}
	c.newPushData()
	return c
}

func (c *Channel) newPushData() {
	c.Token = []byte(randHex(32))[:32]
	c.PushMagic = strings.ToUpper(randHex(16))
}

// ID returns the enrollment ID the server gives this channel.
func (c *Channel) ID() string {
	id, err := c.Enrollment.Resolve()
	if err != nil {
		return ""
	}
	return id.ID
}

func (c *Channel) checkin(ctx context.Context, v any) ([]byte, error) {
	body, err := plist.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encoding check-in: %w", err)
	}
	return c.Device.Transport.Send(ctx, c.Device.Identity, body, true)
}

// AuthenticateMessage builds the device's Authenticate message.
func (d *Device) AuthenticateMessage() *mdm.Authenticate {
	return &mdm.Authenticate{
		Enrollment:   d.Channel.Enrollment,
		MessageType:  mdm.MessageType{MessageType: mdm.MessageAuthenticate},
		Topic:        d.Topic,
		SerialNumber: d.Serial,
		DeviceName:   "Simulated " + d.Serial,
		Model:        "iPhone14,2",
		ModelName:    "iPhone",
		ProductName:  "iPhone14,2",
		OSVersion:    "17.5",
		BuildVersion: "21F79",
	}
}

// Authenticate sends Authenticate for the device channel.
func (d *Device) Authenticate(ctx context.Context) error {
	_, err := d.Channel.checkin(ctx, d.AuthenticateMessage())
	return err
}

// TokenUpdateMessage builds the channel's TokenUpdate message.
func (c *Channel) TokenUpdateMessage() *mdm.TokenUpdate {
	return &mdm.TokenUpdate{
		Enrollment:  c.Enrollment,
		MessageType: mdm.MessageType{MessageType: mdm.MessageTokenUpdate},
		Push:        mdm.Push{Topic: c.Device.Topic, Token: c.Token, PushMagic: c.PushMagic},
	}
}

// TokenUpdate sends TokenUpdate for the channel.
func (c *Channel) TokenUpdate(ctx context.Context) error {
	_, err := c.checkin(ctx, c.TokenUpdateMessage())
	return err
}

// Checkin sends any check-in message (a struct or map plist-encoded as
// given) on the channel and returns the answer body.
func (c *Channel) Checkin(ctx context.Context, msg any) ([]byte, error) {
	return c.checkin(ctx, msg)
}

// GetBootstrapToken sends a GetBootstrapToken check-in on the channel and
// returns the raw answer.
func (c *Channel) GetBootstrapToken(ctx context.Context) ([]byte, error) {
	return c.checkin(ctx, &mdm.GetBootstrapToken{
		Enrollment:  c.Enrollment,
		MessageType: mdm.MessageType{MessageType: mdm.MessageGetBootstrapToken},
	})
}

// BootstrapToken asks for the channel's bootstrap token and returns it:
// nil for an empty answer (no token escrowed), an error for an answer
// that is not a bootstrap-token plist.
func (c *Channel) BootstrapToken(ctx context.Context) ([]byte, error) {
	body, err := c.GetBootstrapToken(ctx)
	if err != nil || len(body) == 0 {
		return nil, err
	}
	var tok mdm.BootstrapToken
	if err := plist.Unmarshal(body, &tok); err != nil {
		return nil, fmt.Errorf("decoding GetBootstrapToken answer %q: %w", body, err)
	}
	if tok.BootstrapToken == nil {
		return nil, fmt.Errorf("GetBootstrapToken answer without a token: %q", body)
	}
	return tok.BootstrapToken, nil
}

// Enroll sends Authenticate then TokenUpdate for the device channel.
func (d *Device) Enroll(ctx context.Context) error {
	if err := d.Authenticate(ctx); err != nil {
		return fmt.Errorf("authenticate: %w", err)
	}
	if err := d.Channel.TokenUpdate(ctx); err != nil {
		return fmt.Errorf("token update: %w", err)
	}
	return nil
}

// CheckOut sends CheckOut for the device channel.
func (d *Device) CheckOut(ctx context.Context) error {
	_, err := d.Channel.checkin(ctx, &mdm.CheckOut{
		Enrollment:  d.Channel.Enrollment,
		MessageType: mdm.MessageType{MessageType: mdm.MessageCheckOut},
		Topic:       d.Topic,
	})
	return err
}

// Report is a command report a channel sends.
type Report struct {
	CommandUUID string
	Status      string
	RequestType string
	// Extra keys merged into the report (e.g. QueryResponses).
	Extra map[string]any
}

// Send sends a command report and returns the next command, or nil when
// the server answered with an empty body.
func (c *Channel) Send(ctx context.Context, r Report) (*mdm.Command, error) {
	body, err := c.ReportBody(r)
	if err != nil {
		return nil, err
	}
	answer, err := c.Device.Transport.Send(ctx, c.Device.Identity, body, false)
	if err != nil {
		return nil, err
	}
	if len(answer) == 0 {
		return nil, nil
	}
	cmd, err := mdm.DecodeCommand(answer)
	if err != nil {
		return nil, fmt.Errorf("decoding command from server: %w", err)
	}
	return cmd, nil
}

// ReportBody encodes the report as the plist the channel would send.
func (c *Channel) ReportBody(r Report) ([]byte, error) {
	m := map[string]any{"Status": r.Status}
	e := c.Enrollment
	for k, v := range map[string]string{
		"UDID": e.UDID, "UserID": e.UserID, "UserShortName": e.UserShortName,
		"UserLongName": e.UserLongName, "EnrollmentID": e.EnrollmentID, "EnrollmentUserID": e.EnrollmentUserID,
		"CommandUUID": r.CommandUUID, "RequestType": r.RequestType,
	} {
		if v != "" {
			m[k] = v
		}
	}
	for k, v := range r.Extra {
		m[k] = v
	}
	body, err := plist.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encoding report: %w", err)
	}
	return body, nil
}

// Idle sends an Idle report and returns the first queued command.
func (c *Channel) Idle(ctx context.Context) (*mdm.Command, error) {
	return c.Send(ctx, Report{Status: mdm.StatusIdle})
}

// Responder decides how a channel answers a command.
type Responder func(cmd *mdm.Command) Report

// Acknowledge answers every command Acknowledged, with a plausible
// QueryResponses for DeviceInformation.
func Acknowledge(cmd *mdm.Command) Report {
	r := Report{CommandUUID: cmd.CommandUUID, Status: mdm.StatusAcknowledged, RequestType: cmd.Command.RequestType}
	if cmd.Command.RequestType == "DeviceInformation" {
		r.Extra = map[string]any{"QueryResponses": map[string]any{
			"DeviceName": "Simulated", "OSVersion": "17.5", "BuildVersion": "21F79",
			"ModelName": "iPhone", "Model": "iPhone14,2", "ProductName": "iPhone14,2",
		}}
	}
	return r
}

// Drain sends Idle and answers each command with respond until the server
// answers empty; it returns the commands received, in order. A NotNow
// answer ends the loop (the device would come back later), as a device
// does. max bounds the commands handled (0 = 10,000).
func (c *Channel) Drain(ctx context.Context, respond Responder, max int) ([]*mdm.Command, error) {
	if max <= 0 {
		max = 10_000
	}
	var got []*mdm.Command
	cmd, err := c.Idle(ctx)
	for err == nil && cmd != nil {
		if len(got) == max {
			return got, fmt.Errorf("more than %d commands", max)
		}
		got = append(got, cmd)
		r := respond(cmd)
		next, sendErr := c.Send(ctx, r)
		if r.Status == mdm.StatusNotNow {
			return got, sendErr
		}
		cmd, err = next, sendErr
	}
	return got, err
}
