package dump

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/groob/plist"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/service"
)

// answering is a service that answers every check-in with body and
// every report with cmd, and err; it counts the check-ins it sees.
type answering struct {
	body  []byte
	cmd   *mdm.Command
	err   error
	calls int
}

func (a *answering) Checkin(*mdm.Request, any) ([]byte, error) {
	a.calls++
	return a.body, a.err
}

func (a *answering) CommandAndReportResults(*mdm.Request, *mdm.CommandResults) (*mdm.Command, error) {
	return a.cmd, a.err
}

func checkin(t *testing.T, messageType string) any {
	t.Helper()
	m := map[string]any{"MessageType": messageType, "UDID": "DUMP-1", "Topic": "com.apple.mgmt.x"}
	switch messageType {
	case mdm.MessageTokenUpdate:
		m["Token"], m["PushMagic"] = []byte("t"), "m"
	case mdm.MessageDeclarativeManagement:
		m["Endpoint"] = "tokens"
	case mdm.MessageGetToken:
		m["TokenServiceType"] = "com.apple.maid"
	}
	raw, _ := plist.Marshal(m)
	msg, err := mdm.DecodeCheckin(raw)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

// TestDump checks SPEC 7.4: every request's raw plist and every non-empty
// answer (next command, DM answer, digest challenge, bootstrap token, get
// token answer, a DM server's non-200 body) is written, and nothing else.
func TestDump(t *testing.T) {
	t.Parallel()
	cmd, _ := mdm.NewCommand("DUMP-CMD", "ProfileList", nil)
	tok := &mdm.BootstrapToken{BootstrapToken: []byte("bootstrap-secret")}
	gt := &mdm.GetTokenResponse{TokenData: []byte("token-data")}
	encTok, _ := mdm.EncodePlist(tok)
	encGT, _ := mdm.EncodePlist(gt)
	r := &mdm.Request{Context: context.Background(), EnrollID: &mdm.EnrollID{ID: "DUMP-1", Type: mdm.Device}}

	for _, tc := range []struct {
		name   string
		msg    any
		next   *answering
		answer []byte // expected answer in the dump after the request; nil = none
	}{
		{"Authenticate", checkin(t, mdm.MessageAuthenticate), &answering{}, nil},
		{"TokenUpdate", checkin(t, mdm.MessageTokenUpdate), &answering{}, nil},
		{"CheckOut", checkin(t, mdm.MessageCheckOut), &answering{}, nil},
		{"SetBootstrapToken", checkin(t, mdm.MessageSetBootstrapToken), &answering{}, nil},
		{"UserAuthenticate challenge", checkin(t, mdm.MessageUserAuthenticate), &answering{body: []byte("<digest challenge/>")}, []byte("<digest challenge/>")},
		{"UserAuthenticate declined", checkin(t, mdm.MessageUserAuthenticate), &answering{err: service.ErrDeclined}, nil},
		{"GetBootstrapToken", checkin(t, mdm.MessageGetBootstrapToken), &answering{body: encTok}, encTok},
		{"GetBootstrapToken none", checkin(t, mdm.MessageGetBootstrapToken), &answering{}, nil},
		{"DeclarativeManagement", checkin(t, mdm.MessageDeclarativeManagement), &answering{body: []byte(`{"SyncTokens":{}}`)}, []byte(`{"SyncTokens":{}}`)},
		{"DeclarativeManagement non-200", checkin(t, mdm.MessageDeclarativeManagement),
			&answering{err: &service.StatusError{Status: http.StatusNotFound, Body: []byte("dm says no"), Err: errors.New("404")}}, []byte("dm says no")},
		{"GetToken", checkin(t, mdm.MessageGetToken), &answering{body: encGT}, encGT},
		{"GetToken failing", checkin(t, mdm.MessageGetToken), &answering{err: errors.New("token service down")}, nil},
		{"report with next command", mustReport(t, "Idle"), &answering{cmd: cmd}, cmd.Raw},
		{"report, empty queue", mustReport(t, "Acknowledged"), &answering{}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			d := New(tc.next, &out)
			var err error
			if res, ok := tc.msg.(*mdm.CommandResults); ok {
				_, err = d.CommandAndReportResults(r, res)
			} else {
				var answer []byte
				answer, err = d.Checkin(r, tc.msg)
				if !bytes.Equal(answer, tc.next.body) || tc.next.calls != 1 {
					t.Errorf("answer %q after %d calls of the next service, want its answer %q after one",
						answer, tc.next.calls, tc.next.body)
				}
			}
			if !errors.Is(err, tc.next.err) {
				t.Errorf("err = %v, want the next service's %v", err, tc.next.err)
			}
			want := string(mdm.RawOf(tc.msg))
			if !strings.HasSuffix(want, "\n") {
				want += "\n"
			}
			if tc.answer != nil {
				want += string(tc.answer)
				if !bytes.HasSuffix(tc.answer, []byte("\n")) {
					want += "\n"
				}
			}
			if out.String() != want {
				t.Errorf("dump =\n%s\nwant\n%s", out.String(), want)
			}
		})
	}
}

func mustReport(t *testing.T, status string) *mdm.CommandResults {
	t.Helper()
	raw, _ := plist.Marshal(map[string]string{"UDID": "DUMP-1", "Status": status, "CommandUUID": "C"})
	res, err := mdm.DecodeCommandResults(raw)
	if err != nil {
		t.Fatal(err)
	}
	return res
}
