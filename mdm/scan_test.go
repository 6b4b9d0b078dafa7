package mdm

import (
	"reflect"
	"strings"
	"testing"

	"github.com/nanomdm/nanomdm/internal/fixture"
)

// slowCommandResults decodes a report the general way only.
func slowCommandResults(raw []byte) (*CommandResults, error) {
	r := &CommandResults{Raw: raw}
	return r, decodePlist(raw, r)
}

// agreeCommandResults fails the test when the scan accepts raw but the
// general path decodes it differently (or not at all).
func agreeCommandResults(t *testing.T, raw []byte) bool {
	t.Helper()
	fast := &CommandResults{Raw: raw}
	if !scanCommandResults(raw, fast) {
		return false
	}
	slow, err := slowCommandResults(raw)
	if err != nil {
		t.Fatalf("scan accepted %q, general decode: %v", raw, err)
	}
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("%q: scan %+v, general decode %+v", raw, fast, slow)
	}
	return true
}

func agreeMessageType(t *testing.T, raw []byte) bool {
	t.Helper()
	var fast, slow MessageType
	if !scanMessageType(raw, &fast) {
		return false
	}
	if err := decodePlist(raw, &slow); err != nil {
		t.Fatalf("scan accepted %q, general decode: %v", raw, err)
	}
	if fast != slow {
		t.Fatalf("%q: scan %q, general decode %q", raw, fast.MessageType, slow.MessageType)
	}
	return true
}

func report(body string) []byte {
	return []byte(`<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
` + body + `
</dict>
</plist>
`)
}

func TestScanCommandResults(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		raw  []byte
		scan bool // the fast path takes it
	}{
		{"idle capture", fixture.Read(t, "IdleReport.plist"), true},
		{"device information capture", fixture.Read(t, "DeviceInformation.1.plist"), true},
		{"user channel", report(`<key>UDID</key><string>U</string><key>UserID</key><string>A&amp;B</string>
<key>UserShortName</key><string>zoë</string><key>UserLongName</key><string>Zoë</string>
<key>Status</key><string>Acknowledged</string><key>CommandUUID</key><string>C</string><key>RequestType</key><string>ProfileList</string>
<key>ProfileList</key><array><dict><key>PayloadVersion</key><integer>1</integer></dict></array>`), true},
		{"user enrollment", report(`<key>EnrollmentID</key><string>E</string><key>EnrollmentUserID</key><string>EU</string><key>Status</key><string>Idle</string>`), true},
		{"no status", report(`<key>UDID</key><string>U</string>`), true},
		{"error chain", report(`<key>UDID</key><string>U</string><key>Status</key><string>Error</string>
<key>ErrorChain</key><array><dict><key>ErrorCode</key><integer>12021</integer></dict></array>`), false},
		{"status not a string", report(`<key>UDID</key><string>U</string><key>Status</key><integer>1</integer>`), false},
		{"UDID a dict", report(`<key>UDID</key><dict/><key>Status</key><string>Idle</string>`), false},
		{"comment", report(`<!-- x --><key>Status</key><string>Idle</string>`), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if have := agreeCommandResults(t, tc.raw); have != tc.scan {
				t.Errorf("scan took it: have %v, want %v", have, tc.scan)
			}
			// Whichever path runs, DecodeCommandResults answers as the
			// general path does.
			have, haveErr := DecodeCommandResults(tc.raw)
			want, wantErr := slowCommandResults(tc.raw)
			if wantErr == nil && want.Status == "" {
				wantErr = ErrNoStatus
			}
			if (haveErr == nil) != (wantErr == nil) || (haveErr == nil && !reflect.DeepEqual(have, want)) {
				t.Errorf("DecodeCommandResults: have %+v, %v; want %+v, %v", have, haveErr, want, wantErr)
			}
		})
	}
}

func TestScanMessageType(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"Authenticate.1.plist", "Authenticate.2.plist", "TokenUpdate.1.plist", "TokenUpdate.2.plist"} {
		t.Run(name, func(t *testing.T) {
			if !agreeMessageType(t, fixture.Read(t, name)) {
				t.Errorf("scan refused a real capture")
			}
		})
	}
	if agreeMessageType(t, report(`<key>MessageType</key><integer>1</integer>`)) {
		t.Errorf("scan took a MessageType that is not a string")
	}
	raw := report(`<key>MessageType</key><string>Bogus</string><key>UDID</key><string>U</string>`)
	if _, err := DecodeCheckin(raw); err == nil || !strings.Contains(err.Error(), "Bogus") {
		t.Errorf("unknown MessageType: have %v, want an error naming it", err)
	}
}

// FuzzScanCommandResults holds the fast paths to the general decoder:
// whatever they take must decode the same way there.
func FuzzScanCommandResults(f *testing.F) {
	addSeeds(f)
	f.Add(report(`<key>UDID</key><string>U</string><key>UserID</key><string>A&amp;B</string><key>Status</key><string>NotNow</string>`))
	f.Add(report(`<key>MessageType</key><string>TokenUpdate</string><key>Token</key><data>AAEC</data>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		agreeCommandResults(t, data)
		agreeMessageType(t, data)
	})
}
