package nanomdm_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/groob/plist"

	httpmdm "github.com/nanomdm/nanomdm/http/mdm"
	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/mdm/simulator"
	"github.com/nanomdm/nanomdm/service"
	"github.com/nanomdm/nanomdm/service/nanomdm"
	"github.com/nanomdm/nanomdm/storage"
)

// recordingStore is a ServiceStore that keeps bootstrap tokens in a map
// and records UserAuthenticate messages. The queue methods are unused.
type recordingStore struct {
	storage.CommandQueueStore // nil: not called by these tests

	mu         sync.Mutex
	known      map[string]bool
	bootstrap  map[string][]byte
	userAuthns []*mdm.UserAuthenticate
}

func newRecordingStore() *recordingStore {
	return &recordingStore{known: map[string]bool{}, bootstrap: map[string][]byte{}}
}

func (s *recordingStore) StoreAuthenticate(r *mdm.Request, _ *mdm.Authenticate) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.known[r.EnrollID.ID] = true
	return nil
}

func (s *recordingStore) StoreTokenUpdate(*mdm.Request, *mdm.TokenUpdate) error { return nil }
func (s *recordingStore) Disable(*mdm.Request) error                            { return nil }

func (s *recordingStore) StoreUserAuthenticate(_ *mdm.Request, m *mdm.UserAuthenticate) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.userAuthns = append(s.userAuthns, m)
	return nil
}

func (s *recordingStore) storedUserAuthenticates() []*mdm.UserAuthenticate {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*mdm.UserAuthenticate(nil), s.userAuthns...)
}

func (s *recordingStore) StoreBootstrapToken(r *mdm.Request, m *mdm.SetBootstrapToken) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(m.BootstrapToken.BootstrapToken) == 0 {
		delete(s.bootstrap, r.EnrollID.ID)
		return nil
	}
	s.bootstrap[r.EnrollID.ID] = m.BootstrapToken.BootstrapToken
	return nil
}

func (s *recordingStore) RetrieveBootstrapToken(r *mdm.Request, _ *mdm.GetBootstrapToken) (*mdm.BootstrapToken, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	tok, ok := s.bootstrap[r.EnrollID.ID]
	if !ok || !s.known[r.EnrollID.ID] {
		return nil, nil
	}
	return &mdm.BootstrapToken{BootstrapToken: tok}, nil
}

func (s *recordingStore) RetrieveTokenUpdateTally(context.Context, string) (int, error) {
	return 0, nil
}

// serve starts the real check-in handler over the core service and
// returns a device talking to it.
func serve(t *testing.T, store storage.ServiceStore, opts ...nanomdm.Option) *simulator.Device {
	t.Helper()
	srv := httptest.NewServer(httpmdm.CheckinHandler(nanomdm.New(store, opts...)))
	t.Cleanup(srv.Close)
	d := simulator.NewDevice(&simulator.Transport{URL: srv.URL}, nil)
	if err := d.Enroll(context.Background()); err != nil {
		t.Fatalf("enrolling: %v", err)
	}
	return d
}

func status(t *testing.T, err error) int {
	t.Helper()
	status := simulator.StatusOf(err)
	if status == 0 {
		t.Fatalf("request failed: %v", err)
	}
	return status
}

func userAuthenticate(c *simulator.Channel, digest string) ([]byte, error) {
	return c.Checkin(context.Background(), &mdm.UserAuthenticate{
		Enrollment:     c.Enrollment,
		MessageType:    mdm.MessageType{MessageType: mdm.MessageUserAuthenticate},
		DigestResponse: digest,
	})
}

func TestUserAuthenticate(t *testing.T) {
	t.Parallel()
	const digest = `Digest username="alice", realm="mdm"`
	for _, tc := range []struct {
		name       string
		opts       []nanomdm.Option
		firstCode  int
		wantStored []string // DigestResponse of each stored message
	}{
		{"declined by default", nil, http.StatusGone, []string{digest}},
		{"zero-length digest challenge", []nanomdm.Option{nanomdm.WithUserAuthenticateZeroLengthDigestChallenge()},
			http.StatusOK, []string{"", digest}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := newRecordingStore()
			d := serve(t, store, tc.opts...)
			u := d.User("USER-1", "alice")

			body, err := userAuthenticate(u, "")
			if have := status(t, err); have != tc.firstCode {
				t.Fatalf("first UserAuthenticate: have status %d, want %d", have, tc.firstCode)
			}
			if tc.firstCode == http.StatusOK {
				var challenge map[string]any
				if err := plist.Unmarshal(body, &challenge); err != nil {
					t.Fatalf("decoding digest challenge %q: %v", body, err)
				}
				if v, ok := challenge["DigestChallenge"]; !ok || v != "" || len(challenge) != 1 {
					t.Errorf("first UserAuthenticate answer: have %v, want exactly an empty DigestChallenge", challenge)
				}
			}

			body, err = userAuthenticate(u, digest)
			if have := status(t, err); have != http.StatusOK || len(body) != 0 {
				t.Fatalf("second UserAuthenticate: have status %d body %q, want an empty 200", have, body)
			}
			stored := store.storedUserAuthenticates()
			if len(stored) != len(tc.wantStored) {
				t.Fatalf("stored %d UserAuthenticate messages, want %d", len(stored), len(tc.wantStored))
			}
			for i, m := range stored {
				if m.DigestResponse != tc.wantStored[i] || m.UserID != "USER-1" || len(m.Raw) == 0 {
					t.Errorf("stored message %d: have DigestResponse %q UserID %q raw %d bytes; want %q, USER-1, raw bytes",
						i, m.DigestResponse, m.UserID, len(m.Raw), tc.wantStored[i])
				}
			}
		})
	}
}

func setBootstrapToken(c *simulator.Channel, token []byte) ([]byte, error) {
	return c.Checkin(context.Background(), &mdm.SetBootstrapToken{
		Enrollment:     c.Enrollment,
		MessageType:    mdm.MessageType{MessageType: mdm.MessageSetBootstrapToken},
		BootstrapToken: mdm.BootstrapToken{BootstrapToken: token},
	})
}

// getBootstrapToken returns the token answered, nil for an empty answer.
func getBootstrapToken(t *testing.T, c *simulator.Channel) []byte {
	t.Helper()
	tok, err := c.BootstrapToken(context.Background())
	if err != nil {
		t.Fatalf("GetBootstrapToken: %v", err)
	}
	return tok
}

func TestBootstrapToken(t *testing.T) {
	t.Parallel()
	store := newRecordingStore()
	d := serve(t, store)
	if have := getBootstrapToken(t, d.Channel); have != nil {
		t.Errorf("token before any was escrowed: have %x, want an empty answer", have)
	}
	token := []byte{0x00, 0xff, 0x80, 'b', 't'}
	for _, step := range []struct {
		set  []byte
		want []byte
	}{
		{token, token},
		{[]byte{}, nil}, // an empty token clears
		{[]byte("second"), []byte("second")},
	} {
		body, err := setBootstrapToken(d.Channel, step.set)
		if have := status(t, err); have != http.StatusOK || len(body) != 0 {
			t.Fatalf("SetBootstrapToken %q: have status %d body %q, want an empty 200", step.set, have, body)
		}
		if have := getBootstrapToken(t, d.Channel); !bytes.Equal(have, step.want) {
			t.Errorf("after SetBootstrapToken %q: have %q, want %q", step.set, have, step.want)
		}
	}
	unknown := simulator.NewDevice(d.Transport, nil)
	if have := getBootstrapToken(t, unknown.Channel); have != nil {
		t.Errorf("token of an unknown device: have %x, want an empty answer", have)
	}
}

// tokenService answers GetToken with its name and the request's
// parameters, or fails when err is set.
type tokenService struct {
	name string
	err  error
}

func (s tokenService) GetToken(_ *mdm.Request, m *mdm.GetToken) (*mdm.GetTokenResponse, error) {
	if s.err != nil {
		return nil, s.err
	}
	return &mdm.GetTokenResponse{TokenData: []byte(s.name + ":" + m.TokenServiceType)}, nil
}

func TestGetToken(t *testing.T) {
	t.Parallel()
	store := newRecordingStore()
	d := serve(t, store,
		nanomdm.WithGetToken("com.apple.maid", tokenService{name: "maid"}),
		nanomdm.WithGetToken("com.example.other", tokenService{name: "other"}),
		nanomdm.WithGetToken("com.example.broken", tokenService{err: errors.New("token service down")}),
	)
	for _, tc := range []struct {
		serviceType string
		want        int
		token       string
	}{
		{"com.apple.maid", http.StatusOK, "maid:com.apple.maid"},
		{"com.example.other", http.StatusOK, "other:com.example.other"},
		{"com.example.unregistered", http.StatusInternalServerError, ""},
		{"", http.StatusInternalServerError, ""},
		{"com.example.broken", http.StatusInternalServerError, ""},
	} {
		body, err := d.Channel.Checkin(context.Background(), &mdm.GetToken{
			Enrollment:       d.Channel.Enrollment,
			MessageType:      mdm.MessageType{MessageType: mdm.MessageGetToken},
			TokenServiceType: tc.serviceType,
		})
		if have := status(t, err); have != tc.want {
			t.Errorf("GetToken %q: have status %d, want %d", tc.serviceType, have, tc.want)
			continue
		}
		if tc.want != http.StatusOK {
			continue
		}
		var resp mdm.GetTokenResponse
		if err := plist.Unmarshal(body, &resp); err != nil {
			t.Fatalf("decoding GetToken answer %q: %v", body, err)
		}
		if string(resp.TokenData) != tc.token {
			t.Errorf("GetToken %q: have TokenData %q, want %q", tc.serviceType, resp.TokenData, tc.token)
		}
	}

	// With no handler registered at all, every GetToken fails.
	bare := serve(t, newRecordingStore())
	_, err := bare.Channel.Checkin(context.Background(), &mdm.GetToken{
		Enrollment:       bare.Channel.Enrollment,
		MessageType:      mdm.MessageType{MessageType: mdm.MessageGetToken},
		TokenServiceType: "com.apple.maid",
	})
	if have := status(t, err); have != http.StatusInternalServerError {
		t.Errorf("GetToken without handlers: have status %d, want 500", have)
	}
}

// failingStore fails every check-in call with err.
type failingStore struct {
	storage.ServiceStore // nil: the queue is not used here
	err                  error
}

func (s failingStore) StoreAuthenticate(*mdm.Request, *mdm.Authenticate) error { return s.err }
func (s failingStore) StoreTokenUpdate(*mdm.Request, *mdm.TokenUpdate) error   { return s.err }
func (s failingStore) Disable(*mdm.Request) error                              { return s.err }
func (s failingStore) StoreUserAuthenticate(*mdm.Request, *mdm.UserAuthenticate) error {
	return s.err
}
func (s failingStore) StoreBootstrapToken(*mdm.Request, *mdm.SetBootstrapToken) error {
	return s.err
}
func (s failingStore) RetrieveBootstrapToken(*mdm.Request, *mdm.GetBootstrapToken) (*mdm.BootstrapToken, error) {
	return nil, s.err
}

// TestCheckinErrors sends every check-in type, and values of no check-in
// type, to the core service's one Checkin method: each error keeps its
// cause for errors.Is (which the HTTP layer maps to a status) and says
// which message type it arose from.
func TestCheckinErrors(t *testing.T) {
	t.Parallel()
	boom := errors.New("storage down")
	svc := nanomdm.New(failingStore{err: boom})
	device := &mdm.Request{Context: context.Background(), EnrollID: &mdm.EnrollID{ID: "D1", Type: mdm.Device}}
	user := &mdm.Request{Context: context.Background(), EnrollID: &mdm.EnrollID{ID: "D1:U1", ParentID: "D1", Type: mdm.User}}
	for _, tc := range []struct {
		name string
		r    *mdm.Request
		msg  any
		want error
		text string // the error's text starts with it
	}{
		{"Authenticate", device, &mdm.Authenticate{}, boom, "authenticate: storage down"},
		{"Authenticate on a user channel", user, &mdm.Authenticate{}, mdm.ErrInvalidEnrollment, "authenticate: "},
		{"TokenUpdate", device, &mdm.TokenUpdate{}, boom, "token update: storage down"},
		{"CheckOut", device, &mdm.CheckOut{}, boom, "check-out: storage down"},
		{"UserAuthenticate declined", user, &mdm.UserAuthenticate{}, service.ErrDeclined, "user authenticate: declined"},
		{"UserAuthenticate digest response", user, &mdm.UserAuthenticate{DigestResponse: "d"}, boom, "user authenticate: storage down"},
		{"SetBootstrapToken", device, &mdm.SetBootstrapToken{}, boom, "set bootstrap token: storage down"},
		{"GetBootstrapToken", device, &mdm.GetBootstrapToken{}, boom, "get bootstrap token: storage down"},
		{"DeclarativeManagement without a handler", device, &mdm.DeclarativeManagement{}, service.ErrNotSupported,
			"declarative management: not supported: no handler configured"},
		{"GetToken of an unregistered type", device, &mdm.GetToken{TokenServiceType: "x"}, service.ErrNotSupported, "get token: not supported"},
		{"a struct of no check-in type", device, &struct{ MessageType string }{"Authenticate"}, mdm.ErrUnrecognizedMessageType, "unrecognized MessageType"},
		{"a check-in message by value", device, mdm.Authenticate{}, mdm.ErrUnrecognizedMessageType, "unrecognized MessageType"},
		{"a command report", device, &mdm.CommandResults{}, mdm.ErrUnrecognizedMessageType, "unrecognized MessageType"},
		{"nil", device, nil, mdm.ErrUnrecognizedMessageType, "unrecognized MessageType"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			body, err := svc.Checkin(tc.r, tc.msg)
			if !errors.Is(err, tc.want) || !strings.HasPrefix(err.Error(), tc.text) || body != nil {
				t.Errorf("have body %q, error %v; want no body and an error wrapping %v that starts %q", body, err, tc.want, tc.text)
			}
		})
	}
}
