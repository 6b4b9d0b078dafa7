package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/certverify"
	mdmhttp "github.com/nanomdm/nanomdm/http"
	"github.com/nanomdm/nanomdm/http/api"
	httpmdm "github.com/nanomdm/nanomdm/http/mdm"
	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/mdm/simulator"
	"github.com/nanomdm/nanomdm/push"
	"github.com/nanomdm/nanomdm/service/nanomdm"
	"github.com/nanomdm/nanomdm/storage/inmem"
	"github.com/nanomdm/nanomdm/storage/storagetest"
)

const testKey = "ctl-test-key"

// fakePusher answers every push with an APNs ID of its own.
type fakePusher struct{}

func (fakePusher) Push(_ context.Context, ids []string) (map[string]*push.Response, error) {
	out := map[string]*push.Response{}
	for _, id := range ids {
		out[id] = &push.Response{ID: "apns-" + id}
	}
	return out, nil
}

// server is the real MDM and API handlers on in-memory storage, routed
// as cmd/nanomdm routes them, with simulated devices enrolled.
type server struct {
	url     string
	devices []*simulator.Device

	mu       sync.Mutex
	requests []string // method, path and content type of each API request
}

func newServer(t *testing.T, devices int) *server {
	t.Helper()
	ca, err := simulator.NewCA("nanoctl test CA")
	if err != nil {
		t.Fatalf("creating CA: %v", err)
	}
	verifier, err := certverify.NewPoolVerifier(ca.CertPEM(), nil)
	if err != nil {
		t.Fatalf("creating verifier: %v", err)
	}
	store := inmem.New()
	opts := []api.Option{api.WithPusher(fakePusher{})}
	auth := func(h http.Handler) http.Handler {
		return mdmhttp.BasicAuthMiddleware(h, mdmhttp.APIUsername, testKey, "nanomdm")
	}
	mux := http.NewServeMux()
	mux.Handle("/mdm", httpmdm.IdentityMiddleware(httpmdm.CheckinAndCommandHandler(nanomdm.New(store)), verifier))
	mux.Handle("/v1/pushcert", auth(api.PushCertHandler(store, opts...)))
	mux.Handle("/v1/enqueue/", auth(http.StripPrefix("/v1/enqueue/", api.EnqueueHandler(store, opts...))))
	mux.Handle("/v1/enqueue", auth(http.StripPrefix("/v1/enqueue", api.EnqueueHandler(store, opts...))))
	mux.Handle("/v1/push/", auth(http.StripPrefix("/v1/push/", api.PushHandler(opts...))))
	mux.Handle("/v1/enrollments", auth(api.EnrollmentsHandler(store, opts...)))
	mux.Handle("/v1/enrollments/{id}/queue", auth(api.QueueHandler(store, opts...)))
	mux.Handle("/v1/commands/{uuid}/results", auth(api.CommandResultsHandler(store, opts...)))
	s := &server{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1/") {
			mt, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";")
			s.mu.Lock()
			s.requests = append(s.requests, r.Method+" "+r.URL.Path+" "+mt)
			s.mu.Unlock()
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	s.url = srv.URL
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := 0; i < devices; i++ {
		udid := simulator.NewUDID()
		id, err := ca.Issue(udid)
		if err != nil {
			t.Fatalf("issuing identity: %v", err)
		}
		dev := simulator.NewDeviceWithUDID(&simulator.Transport{URL: srv.URL + "/mdm"}, id, udid)
		if err := dev.Enroll(ctx); err != nil {
			t.Fatalf("enrolling simulated device: %v", err)
		}
		s.devices = append(s.devices, dev)
	}
	return s
}

// ctl runs nanoctl with the server's URL and key in the environment and
// returns its output and error.
func (s *server) ctl(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	env := map[string]string{"NANOCTL_URL": s.url, "NANOCTL_KEY": testKey, "NANOCTL_CONFIG": os.DevNull}
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), append([]string{"nanoctl"}, args...), func(k string) string { return env[k] },
		strings.NewReader(stdin), &stdout, &stderr)
	return stdout.String() + stderr.String(), err
}

// mustCtl runs nanoctl and fails the test on an error.
func (s *server) mustCtl(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, err := s.ctl(t, stdin, args...)
	if err != nil {
		t.Fatalf("nanoctl %v: %v\n%s", args, err, out)
	}
	return out
}

func wantLines(t *testing.T, what, out string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("%s printed\n%s\nwant it to contain %q", what, out, w)
		}
	}
}

// TestOperatorSession enqueues from a template and from a plist file,
// shows enrollments, the queue, the device's answers, pushes and clears a
// queue, against the real handlers with simulated devices.
func TestOperatorSession(t *testing.T) {
	s := newServer(t, 2)
	a, b := s.devices[0].UDID(), s.devices[1].UDID()
	ctx := context.Background()

	out := s.mustCtl(t, "", "enqueue", "-t", "DeviceInformation", "-p", "queries=SerialNumber,OSVersion",
		"-uuid", "ctl-devinfo", "-nopush", a, b)
	wantLines(t, "enqueue", out, "command ctl-devinfo DeviceInformation", a, b, "queued", "not asked")

	dir := t.TempDir()
	plistFile := filepath.Join(dir, "cmd.plist")
	raw, err := mdm.NewCommand("ctl-raw", "ProfileList", nil)
	if err != nil {
		t.Fatalf("building command: %v", err)
	}
	if err := os.WriteFile(plistFile, raw.Raw, 0o600); err != nil {
		t.Fatalf("writing plist: %v", err)
	}
	idsFile := filepath.Join(dir, "ids.txt")
	if err := os.WriteFile(idsFile, []byte("# the first device\n"+a+"\n\n"), 0o600); err != nil {
		t.Fatalf("writing ids: %v", err)
	}
	out = s.mustCtl(t, "", "enqueue", "-plist", plistFile, "-ids-file", idsFile)
	wantLines(t, "enqueue -plist", out, "command ctl-raw ProfileList", a, "sent apns-"+a)

	out = s.mustCtl(t, "", "queue", a)
	wantLines(t, "queue", out, "COMMAND UUID", "ctl-devinfo", "DeviceInformation", "ctl-raw", "ProfileList")
	if strings.Index(out, "ctl-devinfo") > strings.Index(out, "ctl-raw") {
		t.Errorf("queue printed\n%s\nwant the commands in delivery order", out)
	}

	out = s.mustCtl(t, "", "enrollments")
	wantLines(t, "enrollments", out, "ID", "LAST SEEN", a, b, "Device")
	out = s.mustCtl(t, "", "enrollment", a)
	wantLines(t, "enrollment", out, a, "topic", "token updates")
	if out, err := s.ctl(t, "", "enrollment", "no-such-device"); err == nil || !strings.Contains(err.Error(), "no enrollment") {
		t.Errorf("enrollment of an unknown ID: %v\n%s; want an error", err, out)
	}

	got, err := s.devices[0].Channel.Drain(ctx, simulator.Acknowledge, 0)
	if err != nil || len(got) != 2 {
		t.Fatalf("device a fetched %d commands (%v), want 2", len(got), err)
	}
	if !bytes.Equal(got[1].Raw, raw.Raw) {
		t.Errorf("device got other bytes than the -plist file")
	}
	out = s.mustCtl(t, "", "results", "ctl-devinfo")
	wantLines(t, "results", out, a, "Acknowledged")
	if strings.Contains(out, b) {
		t.Errorf("results printed %s, which has not answered:\n%s", b, out)
	}
	out = s.mustCtl(t, "", "results", "-raw", "ctl-devinfo")
	wantLines(t, "results -raw", out, "<key>QueryResponses</key>", "Simulated")

	out = s.mustCtl(t, "", "-json", "results", "ctl-devinfo")
	var results api.CommandResultsResponse
	if err := json.Unmarshal([]byte(out), &results); err != nil || len(results.Results) != 1 || results.Results[0].ID != a {
		t.Errorf("results -json printed %s (%v), want one result of %s", out, err, a)
	}

	out = s.mustCtl(t, "", "push", a, b)
	wantLines(t, "push", out, "sent apns-"+a, "sent apns-"+b)

	out = s.mustCtl(t, "", "clear-queue", b)
	wantLines(t, "clear-queue", out, "cleared the queue of "+b)
	got, err = s.devices[1].Channel.Drain(ctx, simulator.Acknowledge, 0)
	if err != nil || len(got) != 0 {
		t.Errorf("device b fetched %d commands (%v) after clear-queue, want none", len(got), err)
	}
}

// TestPushCertCommands uploads push certificates and lists them.
func TestPushCertCommands(t *testing.T) {
	s := newServer(t, 0)
	out := s.mustCtl(t, "", "pushcert")
	wantLines(t, "pushcert with none stored", out, "no push certificates")

	dir := t.TempDir()
	topics := []string{"com.apple.mgmt.External.b", "com.apple.mgmt.External.a"}
	for i, topic := range topics {
		pemCert, pemKey := storagetest.NewPushCert(t, topic)
		certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
		if err := os.WriteFile(certFile, pemCert, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyFile, pemKey, 0o600); err != nil {
			t.Fatal(err)
		}
		args := []string{"upload-pushcert", certFile, keyFile}
		stdin := ""
		if i == 1 { // one file holding both, from standard input
			args, stdin = []string{"upload-pushcert", "-"}, string(pemCert)+string(pemKey)
		}
		out = s.mustCtl(t, stdin, args...)
		wantLines(t, "upload-pushcert", out, "stored the push certificate of "+topic, "NOT AFTER")
	}
	out = s.mustCtl(t, "", "pushcert")
	wantLines(t, "pushcert", out, "TOPIC", topics[0], topics[1], "in ")
	if strings.Index(out, topics[1]) > strings.Index(out, topics[0]) {
		t.Errorf("pushcert printed\n%s\nwant topics in order", out)
	}
	out = s.mustCtl(t, "", "-json", "pushcert", topics[0])
	var pc api.PushCertResponse
	if err := json.Unmarshal([]byte(out), &pc); err != nil || pc.Topic != topics[0] || time.Until(pc.NotAfter) <= 0 {
		t.Errorf("pushcert -json TOPIC printed %s (%v), want the topic and a future expiry", out, err)
	}
}

// TestFailuresAreLoud checks that mistakes and server refusals are
// errors carrying the server's own text.
func TestFailuresAreLoud(t *testing.T) {
	s := newServer(t, 1)
	id := s.devices[0].UDID()
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		env  map[string]string // replaces the server's
		args []string
		want string
	}{
		{"unknown command", nil, []string{"fly"}, `unknown command "fly"`},
		{"no command", nil, nil, "no command given"},
		{"unknown template", nil, []string{"enqueue", "-t", "FlyToTheMoon", id}, "unknown command template"},
		{"missing parameter", nil, []string{"enqueue", "-t", "RemoveProfile", id}, `"identifier": required`},
		{"bad parameter", nil, []string{"enqueue", "-t", "Settings", "-p", "bluetooth=maybe", id}, "on or off"},
		{"no IDs", nil, []string{"enqueue", "-t", "ProfileList"}, "no enrollment IDs"},
		{"no command to enqueue", nil, []string{"enqueue", id}, "no command"},
		{"duplicate UUID", nil, []string{"enqueue", "-nopush", "-uuid", "dup", "-t", "ProfileList", id}, "server answered 409"},
		{"unknown queue", nil, []string{"queue", "no-such-device"}, "server answered 404"},
		{"bad push cert", nil, []string{"upload-pushcert", garbage}, "server answered 400 Bad Request: invalid push certificate"},
		{"unknown topic", nil, []string{"pushcert", "com.apple.mgmt.none"}, "server answered 404"},
		{"wrong key", map[string]string{"NANOCTL_URL": s.url, "NANOCTL_KEY": "wrong"}, []string{"enrollments"}, "401"},
		{"no URL", map[string]string{"NANOCTL_KEY": "k"}, []string{"enrollments"}, "no server URL"},
		{"no key", map[string]string{"NANOCTL_URL": s.url}, []string{"enrollments"}, "no API key"},
		{"bad URL", map[string]string{"NANOCTL_URL": "localhost:9000", "NANOCTL_KEY": "k"}, []string{"enrollments"}, "want http(s)://"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "duplicate UUID" {
				s.mustCtl(t, "", tc.args...)
			}
			var out string
			var err error
			if tc.env != nil {
				env := tc.env
				env["NANOCTL_CONFIG"] = os.DevNull
				var buf bytes.Buffer
				err = run(context.Background(), append([]string{"nanoctl"}, tc.args...), func(k string) string { return env[k] },
					strings.NewReader(""), &buf, &buf)
				out = buf.String()
			} else {
				out, err = s.ctl(t, "", tc.args...)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("nanoctl %v: error %v, want one containing %q\n%s", tc.args, err, tc.want, out)
			}
		})
	}
}

// TestConfigSources checks that flags beat the environment, which beats
// the config file.
func TestConfigSources(t *testing.T) {
	s := newServer(t, 0)
	dir := t.TempDir()
	conf := filepath.Join(dir, "config")
	if err := os.WriteFile(conf, []byte("# nanoctl\nurl = "+s.url+"\nkey = "+testKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		ok   bool
	}{
		{"config file flag", nil, []string{"-config", conf}, true},
		{"config file env", map[string]string{"NANOCTL_CONFIG": conf}, nil, true},
		{"env beats file", map[string]string{"NANOCTL_CONFIG": conf, "NANOCTL_KEY": "wrong"}, nil, false},
		{"flag beats env", map[string]string{"NANOCTL_CONFIG": conf, "NANOCTL_KEY": "wrong"}, []string{"-key", testKey}, true},
		{"missing config file", map[string]string{"NANOCTL_CONFIG": filepath.Join(dir, "none")}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			args := append(append([]string{"nanoctl"}, tc.args...), "pushcert")
			err := run(context.Background(), args, func(k string) string { return tc.env[k] }, strings.NewReader(""), &buf, &buf)
			if (err == nil) != tc.ok {
				t.Errorf("nanoctl %v with env %v: error %v, want ok %v\n%s", tc.args, tc.env, err, tc.ok, buf.String())
			}
		})
	}
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("server = x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	err := run(context.Background(), []string{"nanoctl", "-config", bad, "pushcert"}, func(string) string { return "" }, strings.NewReader(""), &buf, &buf)
	if err == nil || !strings.Contains(err.Error(), bad+":1") {
		t.Errorf("a config file with an unknown name: error %v, want one naming the file and line", err)
	}
}

// TestQueuePages checks that a queue longer than the API's page is shown
// whole, in order.
func TestQueuePages(t *testing.T) {
	s := newServer(t, 1)
	id := s.devices[0].UDID()
	const n = 130 // the API's default page is 100
	for i := 0; i < n; i++ {
		s.mustCtl(t, "", "enqueue", "-nopush", "-t", "ProfileList", "-uuid", fmt.Sprintf("page-%03d", i), id)
	}
	out := s.mustCtl(t, "", "-json", "queue", id)
	var q api.QueueResponse
	if err := json.Unmarshal([]byte(out), &q); err != nil || len(q.Commands) != n {
		t.Fatalf("queue -json: %d commands (%v), want %d", len(q.Commands), err, n)
	}
	for i, c := range q.Commands {
		if want := fmt.Sprintf("page-%03d", i); c.CommandUUID != want {
			t.Fatalf("command %d is %s, want %s", i, c.CommandUUID, want)
		}
	}
}

// TestEnqueueManyIDsAsForm enqueues to more IDs than fit one path call:
// nanoctl sends them in one multipart form to /v1/enqueue, the known
// device gets the command and every unknown ID is reported.
func TestEnqueueManyIDsAsForm(t *testing.T) {
	s := newServer(t, 1)
	dev := s.devices[0].UDID()
	var ids strings.Builder
	ids.WriteString(dev + "\n")
	for i := 0; i < 1500; i++ {
		fmt.Fprintf(&ids, "UNKNOWN-%04d\n", i)
	}
	idsFile := filepath.Join(t.TempDir(), "ids.txt")
	if err := os.WriteFile(idsFile, []byte(ids.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	s.requests = nil
	out, err := s.ctl(t, "", "-json", "enqueue", "-nopush", "-t", "ProfileList", "-uuid", "many-1", "-ids-file", idsFile)
	if err == nil || !strings.Contains(err.Error(), "207") {
		t.Fatalf("enqueue to 1501 IDs: error %v, want the 207 of the unknown IDs", err)
	}
	if want := []string{"POST /v1/enqueue multipart/form-data"}; !reflect.DeepEqual(s.requests, want) {
		t.Errorf("requests %v, want %v", s.requests, want)
	}
	var answer api.Response
	if err := json.Unmarshal([]byte(out[:strings.LastIndex(out, "}")+1]), &answer); err != nil {
		t.Fatalf("decoding the answer: %v\n%.300s", err, out)
	}
	if len(answer.Status) != 1500 || answer.Status[dev] != nil || answer.Status["UNKNOWN-0042"] == nil || answer.CommandUUID != "many-1" {
		t.Errorf("answer: %d statuses (device %+v), command %q; want the 1500 unknown IDs only, command many-1",
			len(answer.Status), answer.Status[dev], answer.CommandUUID)
	}
	qout := s.mustCtl(t, "", "-json", "queue", dev)
	if !strings.Contains(qout, "many-1") {
		t.Errorf("queue of the device: %s, want many-1 in it", qout)
	}
}
