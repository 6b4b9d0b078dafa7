package main

import (
	"bytes"
	"context"
	"net/http"
	"testing"

	"github.com/groob/plist"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/mdm/simulator"
)

// TestUserAuthenticateFlag checks UserAuthenticate through the server:
// 410 by default; with -ua-zl-dc a plist holding only an empty
// DigestChallenge; the second message (with DigestResponse) an empty 200.
func TestUserAuthenticateFlag(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra []string
		first int
	}{
		{"default", nil, http.StatusGone},
		{"-ua-zl-dc", []string{"-ua-zl-dc"}, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := launch(t, launchConfig{storage: inmemBackend.flags(t), extra: tc.extra})
			d := enrolled(t, s, &simulator.Transport{URL: s.url + "/mdm"}, "device")
			u := d.User("USER-1", "alice")
			body, err := userAuthenticate(u, "")
			if have := mdmStatus(t, err); have != tc.first {
				t.Fatalf("first UserAuthenticate: have status %d, want %d", have, tc.first)
			}
			if tc.first == http.StatusOK {
				var challenge map[string]any
				if err := plist.Unmarshal(body, &challenge); err != nil {
					t.Fatalf("decoding answer %q: %v", body, err)
				}
				if v, ok := challenge["DigestChallenge"]; !ok || v != "" || len(challenge) != 1 {
					t.Errorf("first UserAuthenticate answer: have %v, want exactly an empty DigestChallenge", challenge)
				}
			}
			body, err = userAuthenticate(u, `Digest username="alice"`)
			if have := mdmStatus(t, err); have != http.StatusOK || len(body) != 0 {
				t.Errorf("second UserAuthenticate: have status %d body %q, want an empty 200", have, body)
			}
			// The user channel then enrolls as usual.
			if err := u.TokenUpdate(context.Background()); err != nil {
				t.Errorf("user TokenUpdate after UserAuthenticate: %v", err)
			}
		})
	}
}

// TestBootstrapTokenCheckins escrows, reads and clears a bootstrap token
// through the server on each backend.
func TestBootstrapTokenCheckins(t *testing.T) {
	for _, be := range []backend{fileBackend, inmemBackend} {
		t.Run(be.name, func(t *testing.T) {
			s, _ := launch(t, launchConfig{storage: be.flags(t)})
			d := enrolled(t, s, &simulator.Transport{URL: s.url + "/mdm"}, "device")
			if have := bootstrapTokenOf(t, d.Channel); have != nil {
				t.Errorf("before escrow: have %q, want an empty answer", have)
			}
			binary := []byte{0x00, 0xff, 0xfe, 0x80, 0x0a}
			for _, step := range []struct {
				set, want []byte
			}{
				{binary, binary},
				{[]byte{}, nil},
				{[]byte("second token"), []byte("second token")},
			} {
				body, err := setBootstrapToken(d.Channel, step.set)
				if have := mdmStatus(t, err); have != http.StatusOK || len(body) != 0 {
					t.Fatalf("SetBootstrapToken %q: have status %d body %q, want an empty 200", step.set, have, body)
				}
				if have := bootstrapTokenOf(t, d.Channel); !bytes.Equal(have, step.want) {
					t.Errorf("after SetBootstrapToken %q: have %q, want %q", step.set, have, step.want)
				}
			}
			// GetToken: the server registers no token service, so 500.
			_, err := d.Channel.Checkin(context.Background(), &mdm.GetToken{
				Enrollment:       d.Channel.Enrollment,
				MessageType:      mdm.MessageType{MessageType: mdm.MessageGetToken},
				TokenServiceType: "com.apple.maid",
			})
			if have := mdmStatus(t, err); have != http.StatusInternalServerError {
				t.Errorf("GetToken without a token service: have status %d, want 500", have)
			}
		})
	}
}

// TestBootstrapTokenUnknownDevice asks for the token of a device the
// server has never seen. certauth refuses it (500) unless -retro lets
// the new certificate be bound; then the core answers an empty 200.
func TestBootstrapTokenUnknownDevice(t *testing.T) {
	for _, tc := range []struct {
		extra []string
		want  int
	}{
		{nil, http.StatusInternalServerError},
		{[]string{"-retro"}, http.StatusOK},
	} {
		s, _ := launch(t, launchConfig{storage: inmemBackend.flags(t), extra: tc.extra})
		id, _ := s.ca.Issue("unknown")
		d := simulator.NewDevice(&simulator.Transport{URL: s.url + "/mdm"}, id)
		body, err := getBootstrapToken(d.Channel)
		if have := mdmStatus(t, err); have != tc.want || bytes.Contains(body, []byte("<plist")) {
			t.Errorf("GetBootstrapToken of an unknown device with flags %v: have status %d body %q, want %d and no token",
				tc.extra, have, body, tc.want)
		}
	}
}
