package multi

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/nanomdm/nanomdm/log"
	"github.com/nanomdm/nanomdm/mdm"
)

// calls records, in order, which service saw which message.
type calls struct {
	mu   sync.Mutex
	seen []string
}

func (c *calls) add(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen = append(c.seen, s)
}

// fake is a service that records each call in calls under its name and
// answers with body (check-ins returning bytes), a command named by body
// (command reports), and err.
type fake struct {
	name  string
	calls *calls
	body  []byte
	err   error
}

func (f *fake) rec(what string) { f.calls.add(f.name + " " + what) }

func (f *fake) Authenticate(*mdm.Request, *mdm.Authenticate) error {
	f.rec("authenticate")
	return f.err
}

func (f *fake) TokenUpdate(*mdm.Request, *mdm.TokenUpdate) error {
	f.rec("token update")
	return f.err
}

func (f *fake) CheckOut(*mdm.Request, *mdm.CheckOut) error {
	f.rec("check-out")
	return f.err
}

func (f *fake) UserAuthenticate(*mdm.Request, *mdm.UserAuthenticate) ([]byte, error) {
	f.rec("user authenticate")
	return f.body, f.err
}

func (f *fake) SetBootstrapToken(*mdm.Request, *mdm.SetBootstrapToken) error {
	f.rec("set bootstrap token")
	return f.err
}

func (f *fake) GetBootstrapToken(*mdm.Request, *mdm.GetBootstrapToken) (*mdm.BootstrapToken, error) {
	f.rec("get bootstrap token")
	return &mdm.BootstrapToken{BootstrapToken: f.body}, f.err
}

func (f *fake) DeclarativeManagement(*mdm.Request, *mdm.DeclarativeManagement) ([]byte, error) {
	f.rec("declarative management")
	return f.body, f.err
}

func (f *fake) GetToken(*mdm.Request, *mdm.GetToken) (*mdm.GetTokenResponse, error) {
	f.rec("get token")
	return &mdm.GetTokenResponse{TokenData: f.body}, f.err
}

func (f *fake) CommandAndReportResults(*mdm.Request, *mdm.CommandResults) (*mdm.Command, error) {
	f.rec("command report")
	return &mdm.Command{CommandUUID: string(f.body)}, f.err
}

// logRecorder keeps the logged key-value lines.
type logRecorder struct {
	mu    sync.Mutex
	lines [][]any
}

func (l *logRecorder) Info(kv ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, kv)
}
func (l *logRecorder) Debug(kv ...any)        { l.Info(kv...) }
func (l *logRecorder) With(...any) log.Logger { return l }

// send calls one method of s; answer is what the primary answered (nil
// for methods without an answer).
type send func(s *Service, r *mdm.Request) (answer []byte, err error)

// TestFanOut sends every message type through a Service with a primary
// and two secondaries: the primary runs first and its answer and error
// are the device's; the secondaries see the request afterwards, in
// order, and their errors are logged, not returned.
func TestFanOut(t *testing.T) {
	primaryErr, secondErr := errors.New("primary failed"), errors.New("second failed")
	noAnswer := func(err error) ([]byte, error) { return nil, err }
	messages := []struct {
		what string
		send send
	}{
		{"authenticate", func(s *Service, r *mdm.Request) ([]byte, error) {
			return noAnswer(s.Authenticate(r, &mdm.Authenticate{}))
		}},
		{"token update", func(s *Service, r *mdm.Request) ([]byte, error) {
			return noAnswer(s.TokenUpdate(r, &mdm.TokenUpdate{}))
		}},
		{"check-out", func(s *Service, r *mdm.Request) ([]byte, error) { return noAnswer(s.CheckOut(r, &mdm.CheckOut{})) }},
		{"user authenticate", func(s *Service, r *mdm.Request) ([]byte, error) {
			return s.UserAuthenticate(r, &mdm.UserAuthenticate{})
		}},
		{"set bootstrap token", func(s *Service, r *mdm.Request) ([]byte, error) {
			return noAnswer(s.SetBootstrapToken(r, &mdm.SetBootstrapToken{}))
		}},
		{"get bootstrap token", func(s *Service, r *mdm.Request) ([]byte, error) {
			tok, err := s.GetBootstrapToken(r, &mdm.GetBootstrapToken{})
			return tok.BootstrapToken, err
		}},
		{"declarative management", func(s *Service, r *mdm.Request) ([]byte, error) {
			return s.DeclarativeManagement(r, &mdm.DeclarativeManagement{})
		}},
		{"get token", func(s *Service, r *mdm.Request) ([]byte, error) {
			tok, err := s.GetToken(r, &mdm.GetToken{})
			return tok.TokenData, err
		}},
		{"command report", func(s *Service, r *mdm.Request) ([]byte, error) {
			cmd, err := s.CommandAndReportResults(r, &mdm.CommandResults{})
			return []byte(cmd.CommandUUID), err
		}},
	}
	for _, failing := range []bool{false, true} {
		for _, m := range messages {
			t.Run(fmt.Sprintf("%s/primary failing=%v", m.what, failing), func(t *testing.T) {
				c := &calls{}
				primary := &fake{name: "primary", calls: c, body: []byte("primary answer")}
				if failing {
					primary.err = primaryErr
				}
				second := &fake{name: "second", calls: c, body: []byte("second answer"), err: secondErr}
				third := &fake{name: "third", calls: c, body: []byte("third answer")}
				logs := &logRecorder{}
				answer, err := m.send(New(logs, primary, second, third), &mdm.Request{Context: context.Background()})

				want := []string{"primary " + m.what, "second " + m.what, "third " + m.what}
				if !slices.Equal(c.seen, want) {
					t.Errorf("calls: have %q, want %q", c.seen, want)
				}
				switch {
				case failing && !errors.Is(err, primaryErr):
					t.Errorf("error: have %v, want the primary's %v", err, primaryErr)
				case !failing && err != nil:
					t.Errorf("error: have %v, want nil (a secondary's error is only logged)", err)
				}
				if answer != nil && string(answer) != "primary answer" {
					t.Errorf("answer: have %q, want the primary's", answer)
				}
				logged := false
				for _, kv := range logs.lines {
					logged = logged || slices.Contains(kv, any(secondErr))
				}
				if !logged {
					t.Errorf("the second service's error was not logged: %v", logs.lines)
				}
			})
		}
	}
}
