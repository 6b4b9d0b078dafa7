package main

import (
	"context"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/mdm/simulator"
	"github.com/nanomdm/nanomdm/storage/storagetest"
)

// TestAPIAuthFailLimit: with -api-auth-fail-limit 3, a client gets three
// 401s and is then answered 429 on every API route, even with the right
// key, while devices and /version are unaffected. Without the flag,
// failures never lock anyone out.
func TestAPIAuthFailLimit(t *testing.T) {
	s := startServer(t, "-storage", "inmem", "-api-auth-fail-limit", "3", "-api-auth-fail-window", "1m")
	dev := enrolled(t, s, &simulator.Transport{URL: s.url + "/mdm"}, "auth limit")
	call := func(method, path, key string) (int, http.Header) {
		t.Helper()
		req, err := http.NewRequest(method, s.url+path, nil)
		if err != nil {
			t.Fatalf("building request: %v", err)
		}
		if key != "" {
			req.SetBasicAuth("nanomdm", key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header
	}
	for i := 0; i < 2; i++ {
		if code, _ := call(http.MethodGet, "/v1/pushcert?topic=x", "wrong"); code != http.StatusUnauthorized {
			t.Fatalf("failure %d: have %d, want 401", i+1, code)
		}
	}
	// Just under the limit the right key still works (and clears the count).
	if code, _ := call(http.MethodPost, "/v1/push/"+dev.UDID(), testAPIKey); code == http.StatusUnauthorized || code == http.StatusTooManyRequests {
		t.Fatalf("right key after 2 failures: have %d", code)
	}
	for i := 0; i < 3; i++ {
		if code, _ := call(http.MethodPut, "/v1/enqueue/"+dev.UDID(), ""); code != http.StatusUnauthorized {
			t.Fatalf("failure %d after the reset: have %d, want 401", i+1, code)
		}
	}
	for _, path := range []string{"/v1/pushcert?topic=x", "/v1/push/" + dev.UDID(), "/v1/enqueue/" + dev.UDID()} {
		code, h := call(http.MethodPost, path, testAPIKey)
		if code != http.StatusTooManyRequests {
			t.Errorf("%s with the right key while locked out: have %d, want 429", path, code)
		}
		if ra, err := strconv.Atoi(h.Get("Retry-After")); err != nil || ra < 1 || ra > 60 {
			t.Errorf("%s: Retry-After %q, want 1 to 60 seconds", path, h.Get("Retry-After"))
		}
	}
	if err := dev.Channel.TokenUpdate(context.Background()); err != nil {
		t.Errorf("device check-in while the API is locked out: %v", err)
	}
	if code, _ := call(http.MethodGet, "/version", ""); code != http.StatusOK {
		t.Errorf("/version while the API is locked out: have %d", code)
	}

	// The default: no limit.
	open := startServer(t, "-storage", "inmem")
	for i := 0; i < 50; i++ {
		req, _ := http.NewRequest(http.MethodGet, open.url+"/v1/pushcert?topic=x", nil)
		req.SetBasicAuth("nanomdm", "wrong")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failure %d without the flag: have %d, want 401", i+1, resp.StatusCode)
		}
	}
}

// unsafeNames would leave a directory, or name something else, if used
// as path elements: every route must refuse them (SPEC 4.2).
var unsafeNames = []string{
	"..", ".", "../evil", "../../evil", "../../../evil", "evil/../../..", "/tmp/evil", "/", `..\evil`,
	`\evil`, "evil\x00", ".\x00.", "evil\n", "~/evil", "....//evil", "evil/.", strings.Repeat("e", mdm.MaxIDLength+1),
}

// oddNames are legal IDs that look like paths or escapes to something: they
// are accepted, and must stay plain names inside the storage directory.
var oddNames = []string{"~", "%2e%2e", "..%2fevil", "CON", "\u2215evil", "evil:..", "...", ".evil"}

// hostileCheckins sends Authenticate and TokenUpdate as binary plists (so
// every byte of name arrives as is) for each channel shape name can take,
// through /mdm and through /migration, plus an Idle report, and returns
// how many were accepted.
func hostileCheckins(t *testing.T, s *server, tr *simulator.Transport, good *simulator.Device, name string) int {
	t.Helper()
	ctx := context.Background()
	id, err := s.ca.Issue("hostile")
	if err != nil {
		t.Fatalf("issuing identity: %v", err)
	}
	accepted := 0
	for _, e := range []map[string]any{
		{"UDID": name}, {"UDID": good.UDID(), "UserID": name},
		{"UDID": good.UDID(), "UserID": mdm.SharediPadUserID, "UserShortName": name},
		{"EnrollmentID": name}, {"EnrollmentID": "ok-" + name, "EnrollmentUserID": name},
	} {
		for _, mt := range []string{"Authenticate", "TokenUpdate", ""} {
			msg := map[string]any{"Topic": simulator.DefaultTopic, "Token": []byte("token"), "PushMagic": "magic"}
			if mt == "" {
				msg = map[string]any{"Status": "Idle"}
			} else {
				msg["MessageType"] = mt
			}
			for k, v := range e {
				msg[k] = v
			}
			raw, err := storagetest.EncodeBinaryPlist(msg)
			if err != nil {
				t.Fatalf("encoding: %v", err)
			}
			if _, err := tr.Send(ctx, id, raw, mt != ""); err == nil {
				accepted++
			}
			if mt != "" && apiStatus(t, s, http.MethodPut, "/migration", raw) == http.StatusOK {
				accepted++
			}
		}
	}
	return accepted
}

// TestFileStorageStaysInItsDirectory throws hostile IDs, command UUIDs and
// push topics at a file-storage server through every HTTP route that
// reaches storage: check-ins, reports, enqueue, push, push certificates and
// migration. Unsafe names are refused everywhere; odd but legal ones are
// served. Files planted next to the storage directory (valid push
// certificates, which a path escape would serve) are never read or
// changed, and nothing is created outside the directory.
func TestFileStorageStaysInItsDirectory(t *testing.T) {
	root := t.TempDir()
	parent := filepath.Join(root, "parent")
	dir := filepath.Join(parent, "db")
	if err := os.MkdirAll(parent, 0o755); err != nil {
		t.Fatalf("creating %s: %v", parent, err)
	}
	s, _ := launch(t, launchConfig{storage: []string{"-storage", "file", "-storage-dsn", dir}, extra: []string{"-migration"}})
	topic := storagetest.NewTopic()
	certPEM, keyPEM := storagetest.NewPushCert(t, topic)
	planted := map[string][]byte{}
	for _, p := range []string{
		filepath.Join(root, "evil.pem"), filepath.Join(parent, "evil.pem"), filepath.Join(dir, "evil.pem"),
		filepath.Join(root, "evil"), filepath.Join(parent, "evil"),
	} {
		b := append(append([]byte{}, certPEM...), keyPEM...)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatalf("planting %s: %v", p, err)
		}
		planted[p] = b
	}
	before := tree(t, root)

	tr := &simulator.Transport{URL: s.url + "/mdm"}
	good := enrolled(t, s, tr, "good device")
	var wantUUIDs []string
	for i, name := range append(append([]string{}, unsafeNames...), oddNames...) {
		unsafe := i < len(unsafeNames)
		if n := hostileCheckins(t, s, tr, good, name); unsafe && n > 0 {
			t.Errorf("%d check-ins naming a channel %q accepted, want none", n, name)
		}
		esc := url.PathEscape(name)
		cmd, _ := mdm.NewCommand("hostile-"+strconv.Itoa(i), "ProfileList", nil)
		for _, path := range []string{"/v1/enqueue/" + esc, "/v1/enqueue/" + good.UDID() + ":" + esc} {
			if code := apiStatus(t, s, http.MethodPut, path+"?nopush=1", cmd.Raw); unsafe && code != http.StatusBadRequest && code != http.StatusNotFound {
				t.Errorf("enqueue to %q: have %d, want 400", path, code)
			}
			apiStatus(t, s, http.MethodPost, strings.Replace(path, "/v1/enqueue/", "/v1/push/", 1), nil)
		}
		hostileCmd := []byte(xmlProlog + `<plist version="1.0"><dict><key>CommandUUID</key><string>` +
			xmlEscape(name) + `</string><key>Command</key><dict><key>RequestType</key><string>ProfileList</string></dict></dict></plist>`)
		code := apiStatus(t, s, http.MethodPut, "/v1/enqueue/"+good.UDID()+"?nopush=1", hostileCmd)
		switch {
		case unsafe && code != http.StatusBadRequest:
			t.Errorf("command UUID %q: have %d, want 400", name, code)
		case !unsafe && code != http.StatusOK:
			t.Errorf("command UUID %q: have %d, want 200", name, code)
		case !unsafe:
			wantUUIDs = append(wantUUIDs, name)
		}
		for _, topic := range []string{name, "com.apple.mgmt." + name, name + "/evil", "../evil", "../../evil"} {
			if code, m := apiCall(t, s, http.MethodGet, "/v1/pushcert?topic="+url.QueryEscape(topic), nil, true); code == http.StatusOK {
				t.Errorf("GET /v1/pushcert?topic=%q: have 200 %v, served a file outside push_certs", topic, m)
			}
		}
	}
	// The good device is still served, and gets exactly the legal commands.
	enqueueOne(t, s, "after-hostile", good.UDID())
	wantCommands(t, good.Channel, append(wantUUIDs, "after-hostile")...)

	for p, want := range planted {
		have, err := os.ReadFile(p)
		if err != nil || string(have) != string(want) {
			t.Errorf("planted file %s changed (err %v)", p, err)
		}
	}
	for p := range tree(t, root) {
		if !before[p] && !strings.HasPrefix(p, "parent/db/") {
			t.Errorf("created outside the storage directory: %s", p)
		}
	}
}

// tree lists every path below root, relative and slash-separated.
func tree(t *testing.T, root string) map[string]bool {
	t.Helper()
	m := map[string]bool{}
	err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		m[filepath.ToSlash(rel)] = true
		return nil
	})
	if err != nil {
		t.Fatalf("walking %s: %v", root, err)
	}
	return m
}

// xmlEscape escapes s for an XML text node.
func xmlEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '<':
			b.WriteString("&lt;")
		case r == '&':
			b.WriteString("&amp;")
		case r < 0x20 || r == 0x7f:
			b.WriteString("&#" + strconv.Itoa(int(r)) + ";")
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
