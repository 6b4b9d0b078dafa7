package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/log/logtest"
	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/mdm/simulator"
)

// putMigration sends raw to /migration with method, with the API
// credentials when auth is set, and returns the status and body.
func putMigration(t *testing.T, s *server, method string, raw []byte, auth bool) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, s.url+"/migration", bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("building request: %v", err)
	}
	if auth {
		req.SetBasicAuth("nanomdm", testAPIKey)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s /migration: %v", method, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

func encode(t *testing.T, v any) []byte {
	t.Helper()
	raw, err := mdm.EncodePlist(v)
	if err != nil {
		t.Fatalf("encoding %T: %v", v, err)
	}
	return raw
}

// TestMigrationEndpoint checks /migration: registered only with -api and
// -migration, Basic auth, PUT or POST, no device identity, and nothing
// but the core service (no certauth association, no dump).
func TestMigrationEndpoint(t *testing.T) {
	t.Run("needs -api", func(t *testing.T) {
		dir := t.TempDir()
		ca, _ := simulator.NewCA("ca")
		caPath := filepath.Join(dir, "ca.pem")
		os.WriteFile(caPath, ca.CertPEM(), 0o644)
		err := run(context.Background(), []string{"nanomdm", "-listen", "127.0.0.1:0", "-ca", caPath, "-migration", "-storage", "inmem"},
			func(string) string { return "" }, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "-migration needs -api") {
			t.Errorf("-migration without -api: have %v, want an error naming -api", err)
		}
	})
	t.Run("off without -migration", func(t *testing.T) {
		s, _ := launch(t, launchConfig{storage: inmemBackend.flags(t)})
		dev := simulator.NewDevice(nil, nil)
		if status, body := putMigration(t, s, http.MethodPut, encode(t, dev.AuthenticateMessage()), true); status != http.StatusNotFound {
			t.Errorf("PUT /migration without -migration: have %d %q, want 404", status, body)
		}
	})

	var events logtest.Buffer // webhook bodies
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(&events, r.Body)
	}))
	defer hook.Close()
	s, store := launch(t, launchConfig{storage: inmemBackend.flags(t), extra: []string{"-migration", "-dump", "-webhook-url", hook.URL}})
	dev := simulator.NewDevice(nil, nil)
	user := dev.User("MIG-USER", "carol")
	auth, tu, userTU := encode(t, dev.AuthenticateMessage()), encode(t, dev.Channel.TokenUpdateMessage()), encode(t, user.TokenUpdateMessage())
	for _, tc := range []struct {
		name   string
		method string
		body   []byte
		auth   bool
		want   int
	}{
		{"no credentials", http.MethodPut, auth, false, http.StatusUnauthorized},
		{"GET", http.MethodGet, nil, true, http.StatusMethodNotAllowed},
		{"undecodable plist", http.MethodPut, []byte("<plist"), true, http.StatusBadRequest},
		{"unknown message type", http.MethodPut, []byte(`<plist><dict><key>MessageType</key><string>Bogus</string><key>UDID</key><string>X</string></dict></plist>`), true, http.StatusBadRequest},
		{"Authenticate by PUT", http.MethodPut, auth, true, http.StatusOK},
		{"TokenUpdate by POST", http.MethodPost, tu, true, http.StatusOK},
		{"user TokenUpdate", http.MethodPut, userTU, true, http.StatusOK},
	} {
		status, body := putMigration(t, s, tc.method, tc.body, tc.auth)
		if status != tc.want {
			t.Errorf("%s: have %d %q, want %d", tc.name, status, body, tc.want)
		}
		if tc.want == http.StatusOK && len(body) != 0 {
			t.Errorf("%s: have body %q, want empty", tc.name, body)
		}
	}
	wantPush(t, store, dev.Channel)
	wantPush(t, store, user)
	if has, err := store.EnrollmentHasCertHash(request(dev.UDID()), ""); err != nil || has {
		t.Errorf("migrated enrollment has a certificate association: %v, %v; want none", has, err)
	}
	// A device enrolling through /mdm, for contrast, is dumped and sent
	// to the webhook.
	direct := enrolled(t, s, &simulator.Transport{URL: s.url + "/mdm"}, "direct")
	s.stop(t) // delivers queued webhook events
	out := s.stdout.String()
	if strings.Contains(out, dev.UDID()) || !strings.Contains(out, direct.UDID()) {
		t.Errorf("-dump: want the /mdm device %s and not the migrated %s in:\n%s", direct.UDID(), dev.UDID(), out)
	}
	if ev := events.String(); strings.Contains(ev, dev.UDID()) || !strings.Contains(ev, direct.UDID()) {
		t.Errorf("webhook: want events of the /mdm device %s and none of the migrated %s in:\n%s", direct.UDID(), dev.UDID(), ev)
	}
}

// migrationPairs are the source and destination backends nano2nano is
// tested between. Adding a pair is one line; the SQL backends come from
// sqlbackends_test.go (a fresh schema or database per use). A SQL source that is shared with other tests also migrates their
// enrollments; the checks below look only at this test's devices.
var migrationPairs = []struct {
	name     string
	src, dst backend
}{
	{"file to file", fileBackend, fileBackend},
	{"file to inmem", fileBackend, inmemBackend},
	{"file to pgsql", fileBackend, pgsqlBackend},
	{"pgsql to mysql", pgsqlBackend, mysqlBackend},
}

// buildNano2Nano compiles cmd/nano2nano into a temporary directory.
func buildNano2Nano(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go tool to build nano2nano: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "nano2nano")
	out, err := exec.Command(goTool, "build", "-o", bin, "github.com/nanomdm/nanomdm/cmd/nano2nano").CombinedOutput()
	if err != nil {
		t.Fatalf("building nano2nano: %v\n%s", err, out)
	}
	return bin
}

// nano2nano runs the tool and returns its exit code and log output.
func nano2nano(t *testing.T, bin string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = []string{} // no NANOMDM_* from the environment
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, logs.String()
	case errors.As(err, &exit):
		return exit.ExitCode(), logs.String()
	}
	t.Fatalf("running nano2nano: %v\n%s", err, logs.String())
	return 0, ""
}

// TestNano2Nano enrolls 20 simulated devices (some with user channels) on
// one server and moves them with nano2nano to another server started with
// -retro -migration. There every channel has the same push topic, token
// and magic, and each device, still using its original identity, gets a
// command queued there and acknowledges it.
func TestNano2Nano(t *testing.T) {
	bin := buildNano2Nano(t)
	for _, pair := range migrationPairs {
		t.Run(pair.name, func(t *testing.T) {
			ctx := context.Background()
			ca, err := simulator.NewCA("migration CA")
			if err != nil {
				t.Fatalf("creating CA: %v", err)
			}
			srcFlags := pair.src.flags(t)
			s1, _ := launch(t, launchConfig{ca: ca, storage: srcFlags})
			tr1 := &simulator.Transport{URL: s1.url + "/mdm"}

			var devices []*simulator.Device
			var chans []*simulator.Channel // every channel that must migrate
			for i := 0; i < 20; i++ {
				d := enrolled(t, s1, tr1, fmt.Sprintf("device %d", i))
				devices = append(devices, d)
				chans = append(chans, d.Channel)
				if i%5 == 0 {
					// A later TokenUpdate with new push data: that one migrates.
					d.Channel.Token = append([]byte(nil), d.Channel.Token...)
					d.Channel.Token[0] ^= 0xff
					d.Channel.PushMagic = "RENEWED-" + d.Channel.PushMagic
					if err := d.Channel.TokenUpdate(ctx); err != nil {
						t.Fatalf("second token update: %v", err)
					}
				}
				var users []*simulator.Channel
				switch i % 4 {
				case 1:
					users = append(users, d.User(fmt.Sprintf("USER-%d-A", i), fmt.Sprintf("user%da", i)))
				case 2:
					users = append(users, d.User(fmt.Sprintf("USER-%d-A", i), fmt.Sprintf("user%da", i)),
						d.User(mdm.SharediPadUserID, fmt.Sprintf("shared%d", i)))
				}
				for _, u := range users {
					if err := u.TokenUpdate(ctx); err != nil {
						t.Fatalf("user token update of %s: %v", u.ID(), err)
					}
					chans = append(chans, u)
				}
			}
			// A command still queued on the old server: history does not move.
			enqueueOne(t, s1, "left-behind", devices[0].UDID())
			// A checked-out device does not move.
			gone := enrolled(t, s1, tr1, "checked out")
			if err := gone.CheckOut(ctx); err != nil {
				t.Fatalf("check-out: %v", err)
			}
			s1.stop(t) // the old server is shut down before migrating

			s2, store := launch(t, launchConfig{ca: ca, storage: pair.dst.flags(t), extra: []string{"-retro", "-migration"}})
			url := s2.url + "/migration"

			// Listing only: nothing is sent.
			code, logs := nano2nano(t, bin, srcFlags...)
			if code != 0 {
				t.Fatalf("nano2nano listing: exit %d\n%s", code, logs)
			}
			if p := pushInfo(t, store, devices[0].UDID()); len(p) != 0 {
				t.Fatalf("listing only sent check-ins: push info %v", p)
			}
			wantListed(t, logs, chans, gone)

			// A wrong key: every check-in is refused, the exit code says so.
			code, logs = nano2nano(t, bin, append([]string{"-url", url, "-key", "wrong"}, srcFlags...)...)
			if code == 0 || !strings.Contains(logs, "status=401") {
				t.Fatalf("nano2nano with a wrong key: exit %d, want non-zero with status=401 logged\n%s", code, logs)
			}

			code, logs = nano2nano(t, bin, append([]string{"-url", url, "-key", testAPIKey}, srcFlags...)...)
			if code != 0 {
				t.Fatalf("nano2nano: exit %d\n%s", code, logs)
			}
			wantListed(t, logs, chans, gone)
			if strings.Contains(logs, "checkin failed") {
				t.Errorf("nano2nano logged failures:\n%s", logs)
			}

			for _, c := range chans {
				wantPush(t, store, c)
			}
			if p := pushInfo(t, store, gone.UDID()); len(p) != 0 {
				t.Errorf("checked-out device migrated: push info %v", p)
			}

			var ids []string
			for _, c := range chans {
				ids = append(ids, c.ID())
			}
			enqueueOne(t, s2, "after-migration", ids...)
			tr2 := &simulator.Transport{URL: s2.url + "/mdm"}
			for i, d := range devices {
				d.Transport = tr2 // same identity, new server
				var mine []*simulator.Channel
				for _, c := range chans {
					if c.Device == d {
						mine = append(mine, c)
					}
				}
				if i%2 == 1 {
					// Let a user channel (if any) speak first: the device's
					// association is made through it.
					for l, r := 0, len(mine)-1; l < r; l, r = l+1, r-1 {
						mine[l], mine[r] = mine[r], mine[l]
					}
				}
				for _, c := range mine {
					wantCommands(t, c, "after-migration")
				}
				if !associated(t, store, d.UDID(), d.Identity) {
					t.Errorf("original identity of %s not associated on the new server", d.UDID())
				}
			}
		})
	}
}

// wantListed fails unless the nano2nano log names every channel's
// check-ins and not the checked-out device.
func wantListed(t *testing.T, logs string, chans []*simulator.Channel, gone *simulator.Device) {
	t.Helper()
	count := func(checkin, id string) int {
		n := 0
		for _, line := range strings.Split(logs, "\n") {
			fields := map[string]bool{}
			for _, f := range strings.Fields(line) {
				fields[f] = true
			}
			if fields["checkin="+checkin] && fields["id="+id] {
				n++
			}
		}
		return n
	}
	for _, c := range chans {
		if c.Enrollment.UserID == "" {
			if n := count(mdm.MessageAuthenticate, c.ID()); n != 1 {
				t.Errorf("Authenticate of %s logged %d times, want 1", c.ID(), n)
			}
		}
		if n := count(mdm.MessageTokenUpdate, c.ID()); n != 1 {
			t.Errorf("TokenUpdate of %s logged %d times, want 1", c.ID(), n)
		}
	}
	if strings.Contains(logs, gone.UDID()) {
		t.Errorf("checked-out device %s listed", gone.UDID())
	}
	if t.Failed() {
		t.Logf("nano2nano log:\n%s", logs)
	}
}
