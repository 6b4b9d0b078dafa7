package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/log/logtest"
	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/mdm/simulator"
	"github.com/nanomdm/nanomdm/storage"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// server is a nanomdm started with real flags, as run starts it.
type server struct {
	url    string
	ca     *simulator.CA
	store  storage.AllStorage // the storage it opened, to look at what it stored
	logs   *logtest.Buffer
	stdout *logtest.Buffer
	cancel context.CancelFunc
	done   chan error
}

const testAPIKey = "test-api-key"

// startServer runs the server with a fresh CA, file storage in a
// temporary directory and extra flags. {addr} in a flag stands for its
// address (e.g. -public-url http://{addr}).
func startServer(t *testing.T, extra ...string) *server {
	t.Helper()
	s, _ := launch(t, launchConfig{storage: []string{"-storage-dsn", filepath.Join(t.TempDir(), "db")}, extra: extra})
	return s
}

// serveArgs starts the server of args (without -listen) on a loopback
// listener of its own and returns once it is serving.
func serveArgs(t *testing.T, ca *simulator.CA, args []string) *server {
	t.Helper()
	s := &server{ca: ca, logs: &logtest.Buffer{}, stdout: &logtest.Buffer{}, done: make(chan error, 1)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening: %v", err)
	}
	flags := []string{"nanomdm"}
	for _, a := range args {
		flags = append(flags, strings.ReplaceAll(a, "{addr}", ln.Addr().String()))
	}
	c, err := parseFlags(flags, func(string) string { return "" }, s.logs)
	if err != nil {
		ln.Close()
		t.Fatalf("flags: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := newApp(ctx, c, s.stdout, s.logs)
	if err != nil {
		cancel()
		ln.Close()
		t.Fatalf("building server: %v\n%s", err, s.logs.String())
	}
	s.url, s.store, s.cancel = "http://"+ln.Addr().String(), a.store, cancel
	go func() {
		err := a.serve(ctx, ln)
		a.close() // as run does: flushes the webhook, closes the storage
		s.done <- err
	}()
	t.Cleanup(func() { s.stop(t) })
	return s
}

func (s *server) stop(t *testing.T) {
	t.Helper()
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("server stopped with error: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Error("server did not stop")
	}
}

type enqueueAnswer struct {
	Status map[string]struct {
		CommandError string `json:"command_error"`
		PushError    string `json:"push_error"`
	} `json:"status"`
	CommandUUID  string `json:"command_uuid"`
	RequestType  string `json:"request_type"`
	CommandError string `json:"command_error"`
	NoPush       bool   `json:"no_push"`
}

func enqueue(t *testing.T, s *server, ids []string, cmd *mdm.Command, query string) (int, *enqueueAnswer) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, s.url+"/v1/enqueue/"+strings.Join(ids, ",")+query, bytes.NewReader(cmd.Raw))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("nanomdm", testAPIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a enqueueAnswer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		t.Fatalf("decoding enqueue answer: %v", err)
	}
	return resp.StatusCode, &a
}

// TestEndToEnd enrolls 20 simulated devices over real HTTP, enqueues
// commands through the API and drains every queue: each command reaches
// each device once, in order, and is acknowledged once.
func TestEndToEnd(t *testing.T) {
	for _, storage := range []string{"file", "inmem"} {
		t.Run(storage, func(t *testing.T) {
			s := startServer(t, "-storage", storage)
			tr := &simulator.Transport{URL: s.url + "/mdm"}
			ctx := context.Background()
			var devices []*simulator.Device
			var ids []string
			for i := 0; i < 20; i++ {
				id, err := s.ca.Issue(fmt.Sprintf("device %d", i))
				if err != nil {
					t.Fatal(err)
				}
				d := simulator.NewDevice(tr, id)
				if err := d.Enroll(ctx); err != nil {
					t.Fatalf("enrolling device %d: %v", i, err)
				}
				devices = append(devices, d)
				ids = append(ids, d.UDID())
			}
			var uuids []string
			for i, rt := range []string{"DeviceInformation", "ProfileList", "SecurityInfo"} {
				uuid := fmt.Sprintf("e2e-%s-%d", storage, i)
				cmd, err := mdm.NewCommand(uuid, rt, nil)
				if err != nil {
					t.Fatal(err)
				}
				status, a := enqueue(t, s, ids, cmd, "?nopush=1")
				if status != http.StatusOK || a.CommandUUID != uuid || a.RequestType != rt || !a.NoPush {
					t.Fatalf("enqueue: have %d %+v", status, a)
				}
				uuids = append(uuids, uuid)
			}
			for _, d := range devices {
				got, err := d.Channel.Drain(ctx, simulator.Acknowledge, 10)
				if err != nil {
					t.Fatalf("draining %s: %v", d.UDID(), err)
				}
				var have []string
				for _, c := range got {
					have = append(have, c.CommandUUID)
				}
				if strings.Join(have, ",") != strings.Join(uuids, ",") {
					t.Errorf("device %s received %v, want %v", d.UDID(), have, uuids)
				}
				// A second poll finds nothing: every command was acknowledged once.
				if next, err := d.Channel.Idle(ctx); err != nil || next != nil {
					t.Errorf("device %s after drain: have %v, %v; want empty", d.UDID(), next, err)
				}
			}
		})
	}
}

func TestEnqueueAnswers(t *testing.T) {
	s := startServer(t, "-storage", "inmem")
	id, _ := s.ca.Issue("device")
	d := simulator.NewDevice(&simulator.Transport{URL: s.url + "/mdm"}, id)
	if err := d.Enroll(context.Background()); err != nil {
		t.Fatal(err)
	}
	cmd, _ := mdm.NewCommand("answers-1", "ProfileList", nil)

	// Without a push service, the push part fails per ID: 207.
	status, a := enqueue(t, s, []string{d.UDID()}, cmd, "")
	if status != http.StatusMultiStatus || a.Status[d.UDID()].PushError == "" || a.Status[d.UDID()].CommandError != "" {
		t.Errorf("enqueue with push: have %d %+v", status, a)
	}
	// The same UUID again is refused as a duplicate.
	status, a = enqueue(t, s, []string{d.UDID()}, cmd, "?nopush=1")
	if status != http.StatusConflict || a.CommandError == "" {
		t.Errorf("duplicate: have %d %+v", status, a)
	}
	// One known and one unknown ID: 207 with a per-ID error.
	cmd2, _ := mdm.NewCommand("answers-2", "ProfileList", nil)
	status, a = enqueue(t, s, []string{d.UDID(), "UNKNOWN"}, cmd2, "?nopush=1")
	if status != http.StatusMultiStatus || a.Status["UNKNOWN"].CommandError == "" {
		t.Errorf("partial: have %d %+v", status, a)
	}
	// Only unknown IDs: 500.
	cmd3, _ := mdm.NewCommand("answers-3", "ProfileList", nil)
	status, _ = enqueue(t, s, []string{"NOPE"}, cmd3, "?nopush=1")
	if status != http.StatusInternalServerError {
		t.Errorf("all unknown: have %d, want 500", status)
	}

	// GET with the plist in the body enqueues, as the original server does
	// for any method: a command translator in use sends exactly this.
	get, _ := mdm.NewCommand("answers-get", "ProfileList", nil)

	for _, tc := range []struct {
		name, method, path, body string
		auth                     bool
		want                     int
	}{
		{"GET with a body", "GET", "/v1/enqueue/" + d.UDID() + "?nopush=1", string(get.Raw), true, 200},
		{"no auth", "PUT", "/v1/enqueue/X", "", false, 401},
		{"wrong method", "DELETE", "/v1/enqueue/X", "", true, 405},
		{"bad plist", "PUT", "/v1/enqueue/X", "<plist>", true, 400},
		{"no request type", "PUT", "/v1/enqueue/X", `<plist><dict><key>CommandUUID</key><string>u</string></dict></plist>`, true, 400},
		{"unsafe id", "PUT", "/v1/enqueue/a%2Fb", string(cmd.Raw), true, 400},
		{"control character id", "PUT", "/v1/enqueue/bad%01id", string(cmd.Raw), true, 400},
		{"no ids", "PUT", "/v1/enqueue/", string(cmd.Raw), true, 400},
		{"version", "GET", "/version", "", false, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, s.url+tc.path, strings.NewReader(tc.body))
			if tc.auth {
				req.SetBasicAuth("nanomdm", testAPIKey)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status: have %d, want %d (%s)", resp.StatusCode, tc.want, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("content type: have %q", ct)
			}
			if tc.want == 401 && resp.Header.Get("WWW-Authenticate") != `Basic realm="nanomdm"` {
				t.Errorf("WWW-Authenticate: have %q", resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
}

func TestFlagsAndEnvironment(t *testing.T) {
	env := map[string]string{"NANOMDM_LISTEN": ":1234", "NANOMDM_API": "from-env", "NANOMDM_DEBUG": "true"}
	getenv := func(k string) string { return env[k] }
	c, err := parseFlags([]string{"nanomdm", "-api", "from-flag"}, getenv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.listen != ":1234" || c.apiKey != "from-flag" || !c.debug {
		t.Errorf("have listen %q api %q debug %v", c.listen, c.apiKey, c.debug)
	}
	var help bytes.Buffer
	parseFlags([]string{"nanomdm", "-h"}, getenv, &help)
	for _, want := range []string{"-storage-dsn", "NANOMDM_STORAGE_DSN", "-max-body-bytes", "NANOMDM_CA"} {
		if !strings.Contains(help.String(), want) {
			t.Errorf("-h output lacks %q", want)
		}
	}
}

func TestStartupErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.pem")
	os.WriteFile(empty, []byte("no certificates here"), 0o644)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"nothing to do", []string{"-disable-mdm"}, "nothing for server to do"},
		{"no ca", []string{}, "-ca is required"},
		{"unreadable ca", []string{"-ca", filepath.Join(dir, "missing.pem")}, "reading CA file"},
		{"empty ca", []string{"-ca", empty}, "loading CA"},
		{"unknown storage", []string{"-ca", empty, "-storage", "bogus", "-disable-mdm", "-api", "k"}, "unknown storage backend"},
		{"stray argument", []string{"-ca", empty, "-api", "k", "inmem"}, `unexpected argument "inmem"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := run(context.Background(), append([]string{"nanomdm", "-listen", "127.0.0.1:0"}, tc.args...), func(string) string { return "" }, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("have %v, want error containing %q", err, tc.want)
			}
		})
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"nanomdm", "-version"}, func(string) string { return "" }, &out, io.Discard); err != nil || !strings.HasPrefix(out.String(), "nanomdm ") {
		t.Errorf("-version: have %q, %v", out.String(), err)
	}
}

// TestDump checks that -dump writes requests, also those refused by the
// identity check, and the commands answered.
func TestDump(t *testing.T) {
	s := startServer(t, "-storage", "inmem", "-dump")
	id, _ := s.ca.Issue("device")
	d := simulator.NewDevice(&simulator.Transport{URL: s.url + "/mdm"}, id)
	ctx := context.Background()
	if err := d.Enroll(ctx); err != nil {
		t.Fatal(err)
	}
	cmd, _ := mdm.NewCommand("dump-1", "ProfileList", nil)
	if status, _ := enqueue(t, s, []string{d.UDID()}, cmd, "?nopush=1"); status != 200 {
		t.Fatalf("enqueue: %d", status)
	}
	if _, err := d.Channel.Drain(ctx, simulator.Acknowledge, 5); err != nil {
		t.Fatal(err)
	}
	// A device whose identity the server does not trust is refused (400)
	// before any service: its request is dumped all the same.
	other, _ := simulator.NewCA("other CA")
	strangerID, _ := other.Issue("stranger")
	stranger := simulator.NewDevice(&simulator.Transport{URL: s.url + "/mdm"}, strangerID)
	if err := stranger.Enroll(ctx); err == nil {
		t.Fatal("a device of an untrusted CA enrolled")
	}
	out := s.stdout.String()
	if !strings.Contains(out, "<string>"+stranger.UDID()+"</string>") {
		t.Errorf("dump lacks the refused request of %s", stranger.UDID())
	}
	for _, want := range []string{"<string>Authenticate</string>", "<string>TokenUpdate</string>", "<string>Idle</string>", "<string>dump-1</string>", "<string>Acknowledged</string>"} {
		if !strings.Contains(out, want) {
			t.Errorf("dump lacks %s", want)
		}
	}
}
