package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/nanomdm/nanomdm/http/authproxy"
	"github.com/nanomdm/nanomdm/mdm/simulator"
	"github.com/nanomdm/nanomdm/service/dmforward"
	"github.com/nanomdm/nanomdm/storage/file"
)

// TestIntegrationFlags starts the server with the webhook, DM forwarding
// and dump flags, enrolls a device and sends a DeclarativeManagement
// check-in: the DM server's answer reaches the device and the dump, and
// after shutdown every event has been delivered, signed, in order.
func TestIntegrationFlags(t *testing.T) {
	const hookKey, dmSend, dmRecv = "hook key", "dm send", "dm recv"
	var mu sync.Mutex
	var topics []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var ev struct{ Topic string }
		json.Unmarshal(body, &ev)
		if r.Header.Get("X-Hmac-Signature") != dmforward.Sign([]byte(hookKey), body) {
			ev.Topic += " (bad signature)"
		}
		mu.Lock()
		topics = append(topics, ev.Topic)
		mu.Unlock()
	}))
	defer hook.Close()
	dmAnswer := []byte(`{"SyncTokens":{"DeclarationsToken":"e2e"}}`)
	var dmSeen []string
	dm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		dmSeen = append(dmSeen, r.Method+" "+r.URL.Path+" "+r.Header.Get("X-Enrollment-ID")+" "+
			map[bool]string{true: "signed", false: "unsigned"}[dmforward.Verify([]byte(dmSend), nil, r.Header.Get("X-Hmac-Signature"))])
		mu.Unlock()
		w.Header().Set("X-Hmac-Signature", dmforward.Sign([]byte(dmRecv), dmAnswer))
		w.Write(dmAnswer)
	}))
	defer dm.Close()

	s := startServer(t, "-webhook-url", hook.URL, "-webhook-hmac-key", hookKey,
		"-dm", dm.URL+"/dm/", "-dm-send-hmac-key", dmSend, "-dm-recv-hmac-key", dmRecv, "-dump")
	dev := enrolled(t, s, &simulator.Transport{URL: s.url + "/mdm"}, "integrations")
	got, err := dev.Channel.Checkin(context.Background(), map[string]any{
		"MessageType": "DeclarativeManagement", "UDID": dev.UDID(), "Endpoint": "tokens",
	})
	if err != nil || string(got) != string(dmAnswer) {
		t.Fatalf("DeclarativeManagement answer = %q, %v; want %q", got, err, dmAnswer)
	}
	s.stop(t)

	mu.Lock()
	defer mu.Unlock()
	if want := "GET /dm/tokens " + dev.UDID() + " signed"; len(dmSeen) != 1 || dmSeen[0] != want {
		t.Errorf("DM server saw %q, want [%q]", dmSeen, want)
	}
	want := []string{"mdm.Authenticate", "mdm.TokenUpdate", "mdm.DeclarativeManagement"}
	if strings.Join(topics, ",") != strings.Join(want, ",") {
		t.Errorf("webhook events after shutdown = %q, want %q", topics, want)
	}
	if !strings.Contains(s.stdout.String(), string(dmAnswer)) {
		t.Errorf("dump lacks the DM answer:\n%s", s.stdout.String())
	}
}

func TestDMWithoutTrailingSlashWarns(t *testing.T) {
	s := startServer(t, "-dm", "http://127.0.0.1:1/dm")
	s.stop(t)
	if !strings.Contains(s.logs.String(), "no trailing slash") {
		t.Errorf("no start-up warning for -dm without a trailing slash:\n%s", s.logs.String())
	}
}

func TestIntegrationFlagErrors(t *testing.T) {
	dir := t.TempDir()
	ca, _ := simulator.NewCA("flags CA")
	caPath := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caPath, ca.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"-webhook-url", "ftp://example.com/hook"}, "-webhook-url"},
		{[]string{"-webhook-hmac-key", "k"}, "-webhook-hmac-key needs -webhook-url"},
		{[]string{"-dm-send-hmac-key", "k"}, "need -dm"},
		{[]string{"-dm", "dm.example.com/"}, "-dm"},
		{[]string{"-auth-proxy-url", "http://upstream.example.com", "-disable-mdm"}, "-disable-mdm"},
		{[]string{"-auth-proxy-url", "upstream"}, "-auth-proxy-url"},
	}
	// Until the file backend can find enrollments by certificate hash,
	// the auth proxy must refuse to start on it rather than refuse every
	// device later.
	fs, err := file.New(filepath.Join(dir, "probe"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := any(fs).(authproxy.EnrollmentFinder); !ok {
		cases = append(cases, struct {
			args []string
			want string
		}{[]string{"-auth-proxy-url", "http://upstream.example.com"}, "RetrieveEnrollmentIDByCertHash"})
	}
	for _, tc := range cases {
		args := append([]string{"nanomdm", "-listen", "127.0.0.1:0", "-ca", caPath, "-api", "k",
			"-storage-dsn", filepath.Join(dir, "db")}, tc.args...)
		err := run(context.Background(), args, func(string) string { return "" }, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want one mentioning %q", tc.args, err, tc.want)
		}
	}
}
