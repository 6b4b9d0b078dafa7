package multi

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/nanomdm/nanomdm/log/logtest"
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

func (f *fake) Checkin(_ *mdm.Request, msg any) ([]byte, error) {
	f.rec(fmt.Sprintf("%T", msg))
	return f.body, f.err
}

func (f *fake) CommandAndReportResults(*mdm.Request, *mdm.CommandResults) (*mdm.Command, error) {
	f.rec(fmt.Sprintf("%T", &mdm.CommandResults{}))
	return &mdm.Command{CommandUUID: string(f.body)}, f.err
}

// TestFanOut sends every check-in message type, a message of no check-in
// type and a command report through a Service with a primary and two
// secondaries: the primary runs first and its answer and error are the
// device's; the secondaries see the same message afterwards, in order,
// and their errors are logged with the message type, not returned.
func TestFanOut(t *testing.T) {
	t.Parallel()
	primaryErr, secondErr := errors.New("primary failed"), errors.New("second failed")
	messages := []any{&mdm.Authenticate{}, &mdm.TokenUpdate{}, &mdm.CheckOut{}, &mdm.UserAuthenticate{},
		&mdm.SetBootstrapToken{}, &mdm.GetBootstrapToken{}, &mdm.DeclarativeManagement{}, &mdm.GetToken{},
		&struct{ MessageType string }{"Unknown"}, &mdm.CommandResults{}}
	for _, failing := range []bool{false, true} {
		for _, msg := range messages {
			what := fmt.Sprintf("%T", msg)
			t.Run(fmt.Sprintf("%s/primary failing=%v", what, failing), func(t *testing.T) {
				t.Parallel()
				c := &calls{}
				primary := &fake{name: "primary", calls: c, body: []byte("primary answer")}
				if failing {
					primary.err = primaryErr
				}
				second := &fake{name: "second", calls: c, body: []byte("second answer"), err: secondErr}
				third := &fake{name: "third", calls: c, body: []byte("third answer")}
				logs := &logtest.Recorder{}
				s := New(logs, primary, second, third)
				r := &mdm.Request{Context: context.Background()}
				var answer []byte
				var err error
				wantRequest := mdm.MessageTypeOf(msg)
				if res, ok := msg.(*mdm.CommandResults); ok {
					var cmd *mdm.Command
					cmd, err = s.CommandAndReportResults(r, res)
					answer = []byte(cmd.CommandUUID)
					wantRequest = "command report"
				} else {
					answer, err = s.Checkin(r, msg)
				}

				want := []string{"primary " + what, "second " + what, "third " + what}
				if !slices.Equal(c.seen, want) {
					t.Errorf("calls: have %q, want %q", c.seen, want)
				}
				switch {
				case failing && !errors.Is(err, primaryErr):
					t.Errorf("error: have %v, want the primary's %v", err, primaryErr)
				case !failing && err != nil:
					t.Errorf("error: have %v, want nil (a secondary's error is only logged)", err)
				}
				if string(answer) != "primary answer" {
					t.Errorf("answer: have %q, want the primary's", answer)
				}
				lines := logs.Lines()
				if len(lines) != 1 || !slices.Contains(lines[0], any(secondErr)) || !slices.Contains(lines[0], any(wantRequest)) {
					t.Errorf("logged %v, want one line with the second service's error and request %q", lines, wantRequest)
				}
			})
		}
	}
}
