package mdm

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/nanomdm/nanomdm/internal/fixture"
)

func TestDecodeCheckinCaptures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		file   string
		check  func(t *testing.T, msg any)
		wantID string
	}{
		{"Authenticate.1.plist", func(t *testing.T, msg any) {
			m := msg.(*Authenticate)
			if m.SerialNumber != "F5JM992LF193" || m.OSVersion != "9.3.5" || m.ProductName != "iPad2,5" || m.BuildVersion != "13G36" {
				t.Errorf("have %+v", m)
			}
			if m.Topic != "com.apple.mgmt.External.e0bd1eac-1f17-4c8e-8a63-dd17d3dd35d9" {
				t.Errorf("topic: have %q", m.Topic)
			}
		}, "663b07bb783e9ade1dae4fbb92ea12afc0ce5b69"},
		{"Authenticate.2.plist", func(t *testing.T, msg any) {
			m := msg.(*Authenticate)
			if m.DeviceName != "Fruit" || m.Model != "iMac14,2" || m.ModelName != "iMac" || m.SerialNumber != "C02MT66KFLHH" {
				t.Errorf("have %+v", m)
			}
		}, "66ADE930-5FDF-5EC4-8429-15640684C489"},
		{"TokenUpdate.1.plist", func(t *testing.T, msg any) {
			m := msg.(*TokenUpdate)
			if m.PushMagic != "CEFDF0BD-E342-4A27-8742-E930EA116B0A" {
				t.Errorf("push magic: have %q", m.PushMagic)
			}
			if len(m.Token) != 32 || len(m.UnlockToken) < 1000 {
				t.Errorf("token %d bytes, unlock token %d bytes", len(m.Token), len(m.UnlockToken))
			}
			if !bytes.HasPrefix(m.UnlockToken, []byte("DATA")) {
				t.Errorf("unlock token does not start with DATA: %q", m.UnlockToken[:8])
			}
		}, "663b07bb783e9ade1dae4fbb92ea12afc0ce5b69"},
		{"TokenUpdate.2.plist", func(t *testing.T, msg any) {
			m := msg.(*TokenUpdate)
			if hex.EncodeToString(m.Token) != "1ba7c90066c50f77689a24f3a425caf68a300f729e88e460a9416022d5d642cc" {
				t.Errorf("token: have %x", m.Token)
			}
			if m.UnlockToken != nil || m.AwaitingConfiguration {
				t.Errorf("have %+v", m)
			}
		}, "66ADE930-5FDF-5EC4-8429-15640684C489"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			raw := fixture.Read(t, tc.file)
			msg, err := DecodeCheckin(raw)
			if err != nil {
				t.Fatalf("decoding: %v", err)
			}
			tc.check(t, msg)
			if !bytes.Equal(RawOf(msg), raw) {
				t.Error("raw bytes not kept")
			}
			id, err := EnrollmentOf(msg).Resolve()
			if err != nil {
				t.Fatalf("resolving: %v", err)
			}
			if id.ID != tc.wantID || id.Type != Device || id.ParentID != "" {
				t.Errorf("enroll id: have %+v, want device %s", id, tc.wantID)
			}
		})
	}
}

func TestDecodeCommandResultsCaptures(t *testing.T) {
	t.Parallel()
	raw := fixture.Read(t, "DeviceInformation.1.plist")
	r, err := DecodeCommandResults(raw)
	if err != nil {
		t.Fatalf("decoding: %v", err)
	}
	if r.CommandUUID != "76eda240-5488-4989-8339-f2ae160113c4" || r.Status != StatusAcknowledged || r.RequestType != "DeviceInformation" || r.UDID != "66ADE930-5FDF-5EC4-8429-15640684C489" {
		t.Errorf("have %+v", r)
	}
	if !bytes.Equal(r.Raw, raw) {
		t.Error("raw bytes not kept")
	}
	idle, err := DecodeCommandResults(fixture.Read(t, "IdleReport.plist"))
	if err != nil {
		t.Fatalf("decoding idle: %v", err)
	}
	if idle.Status != StatusIdle || idle.UDID != "D4D56083-BFB0-5047-8BDF-2727BACDC59B" || idle.CommandUUID != "" {
		t.Errorf("idle: have %+v", idle)
	}
}

func plistDict(kv ...string) []byte {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?><plist version="1.0"><dict>`)
	for i := 0; i+1 < len(kv); i += 2 {
		b.WriteString("<key>" + kv[i] + "</key><string>" + kv[i+1] + "</string>")
	}
	b.WriteString("</dict></plist>")
	return []byte(b.String())
}

func TestDecodeErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		raw     []byte
		checkin bool
		want    error
	}{
		{"empty check-in", nil, true, ErrDecode},
		{"garbage check-in", []byte("not a plist"), true, ErrDecode},
		{"unknown message type", plistDict("MessageType", "Bogus", "UDID", "x"), true, ErrUnrecognizedMessageType},
		{"no message type", plistDict("UDID", "x"), true, ErrUnrecognizedMessageType},
		{"report without status", plistDict("UDID", "x", "CommandUUID", "y"), false, ErrNoStatus},
		{"truncated report", plistDict("UDID", "x", "Status", "Idle")[:60], false, ErrDecode},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.checkin {
				_, err = DecodeCheckin(tc.raw)
			} else {
				_, err = DecodeCommandResults(tc.raw)
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("have %v, want %v", err, tc.want)
			}
		})
	}
}

func TestDecodeCommand(t *testing.T) {
	t.Parallel()
	cmd, err := NewCommand("abc-123", "DeviceInformation", map[string]any{"Queries": []string{"UDID"}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeCommand(cmd.Raw)
	if err != nil {
		t.Fatalf("decoding: %v", err)
	}
	if got.CommandUUID != "abc-123" || got.Command.RequestType != "DeviceInformation" || !bytes.Equal(got.Raw, cmd.Raw) {
		t.Errorf("have %+v", got)
	}
	for _, tc := range []struct {
		name string
		raw  []byte
		want error
	}{
		{"no uuid", []byte(`<plist><dict><key>Command</key><dict><key>RequestType</key><string>X</string></dict></dict></plist>`), ErrInvalidCommand},
		{"no request type", plistDict("CommandUUID", "u"), ErrInvalidCommand},
		{"slash in uuid", []byte(`<plist><dict><key>CommandUUID</key><string>../x</string><key>Command</key><dict><key>RequestType</key><string>X</string></dict></dict></plist>`), ErrInvalidCommand},
		{"garbage", []byte("{}"), ErrDecode},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := DecodeCommand(tc.raw); !errors.Is(err, tc.want) {
				t.Errorf("have %v, want %v", err, tc.want)
			}
		})
	}
}

func TestResolveEnrollID(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		e      Enrollment
		want   EnrollID
		expErr error
	}{
		{"device", Enrollment{UDID: "U1"}, EnrollID{Type: Device, ID: "U1"}, nil},
		{"user", Enrollment{UDID: "U1", UserID: "A-B"}, EnrollID{Type: User, ID: "U1:A-B", ParentID: "U1"}, nil},
		{"shared ipad", Enrollment{UDID: "U1", UserID: SharediPadUserID, UserShortName: "jane"}, EnrollID{Type: SharediPad, ID: "U1:jane", ParentID: "U1"}, nil},
		{"user enrollment device", Enrollment{EnrollmentID: "E1"}, EnrollID{Type: UserEnrollmentDevice, ID: "E1"}, nil},
		{"user enrollment", Enrollment{EnrollmentID: "E1", EnrollmentUserID: "EU"}, EnrollID{Type: UserEnrollment, ID: "E1:EU", ParentID: "E1"}, nil},
		{"none", Enrollment{}, EnrollID{}, ErrInvalidEnrollment},
		{"shared ipad without short name", Enrollment{UDID: "U1", UserID: SharediPadUserID}, EnrollID{}, ErrInvalidID},
		{"dot dot", Enrollment{UDID: ".."}, EnrollID{}, ErrInvalidID},
		{"slash", Enrollment{UDID: "a/b"}, EnrollID{}, ErrInvalidID},
		{"backslash", Enrollment{UDID: `a\b`}, EnrollID{}, ErrInvalidID},
		{"nul", Enrollment{UDID: "a\x00b"}, EnrollID{}, ErrInvalidID},
		{"newline user", Enrollment{UDID: "U", UserID: "x\ny"}, EnrollID{}, ErrInvalidID},
		{"too long", Enrollment{UDID: strings.Repeat("a", 256)}, EnrollID{}, ErrInvalidID},
		{"max length", Enrollment{UDID: strings.Repeat("a", 255)}, EnrollID{Type: Device, ID: strings.Repeat("a", 255)}, nil},
		{"colon in udid", Enrollment{UDID: "a:b"}, EnrollID{}, ErrInvalidID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := tc.e.Resolve()
			if tc.expErr != nil {
				if !errors.Is(err, tc.expErr) {
					t.Fatalf("error: have %v, want %v", err, tc.expErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("resolving: %v", err)
			}
			if *id != tc.want {
				t.Errorf("have %+v, want %+v", *id, tc.want)
			}
		})
	}
}

func TestEnrollTypeNames(t *testing.T) {
	t.Parallel()
	for _, typ := range []EnrollType{Device, User, UserEnrollmentDevice, UserEnrollment, SharediPad} {
		back, ok := ParseEnrollType(typ.String())
		if !ok || back != typ {
			t.Errorf("%v: round trip gave %v, %v", typ, back, ok)
		}
	}
}

// TestMessageTypeOf checks MessageTypeOf for every check-in type as
// DecodeCheckin returns it, and "" for anything else.
func TestMessageTypeOf(t *testing.T) {
	t.Parallel()
	for _, mt := range []string{MessageAuthenticate, MessageTokenUpdate, MessageCheckOut, MessageUserAuthenticate,
		MessageSetBootstrapToken, MessageGetBootstrapToken, MessageDeclarativeManagement, MessageGetToken} {
		msg, err := DecodeCheckin(plistDict("MessageType", mt, "UDID", "U"))
		if err != nil {
			t.Fatalf("decoding %s: %v", mt, err)
		}
		if have := MessageTypeOf(msg); have != mt {
			t.Errorf("MessageTypeOf(%T) = %q, want %q", msg, have, mt)
		}
	}
	for _, v := range []any{nil, Authenticate{}, &CommandResults{}, &struct{ MessageType string }{"Authenticate"}, "Authenticate"} {
		if have := MessageTypeOf(v); have != "" {
			t.Errorf("MessageTypeOf(%#v) = %q, want \"\"", v, have)
		}
	}
}
