package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/mdm/simulator"
	"github.com/nanomdm/nanomdm/push/nanopush/apnstest"
	"github.com/nanomdm/nanomdm/storage/storagetest"
)

// recorder is an http.RoundTripper that keeps every answer (status line,
// headers and body) it passes on, so a test can scan all of them.
type recorder struct {
	next http.RoundTripper
	mu   sync.Mutex
	all  []recordedAnswer
}

type recordedAnswer struct {
	what string // method and path
	text string // status, headers and body
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n", resp.Status)
	resp.Header.Write(&b)
	b.Write(body)
	r.mu.Lock()
	r.all = append(r.all, recordedAnswer{what: req.Method + " " + req.URL.Path, text: b.String()})
	r.mu.Unlock()
	return resp, nil
}

// secret is a value that must not leak, with the encodings it could leak in.
type secret struct {
	name  string
	forms []string
}

// bytesSecret gives the raw, base64 (standard and URL, padded or not) and
// hex forms of b.
func bytesSecret(name string, b []byte) secret {
	return secret{name, []string{
		string(b),
		base64.StdEncoding.EncodeToString(b), base64.RawStdEncoding.EncodeToString(b),
		base64.URLEncoding.EncodeToString(b), base64.RawURLEncoding.EncodeToString(b),
		hex.EncodeToString(b), strings.ToUpper(hex.EncodeToString(b)),
	}}
}

// keySecret gives every 32-character run of a PEM private key's base64
// text (broken at any offset) and of its DER in hex: a key that leaks in
// part, or re-wrapped, still matches.
func keySecret(t *testing.T, name string, keyPEM []byte) secret {
	t.Helper()
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		t.Fatalf("%s: not PEM", name)
	}
	s := secret{name: name}
	for _, text := range []string{base64.StdEncoding.EncodeToString(block.Bytes), hex.EncodeToString(block.Bytes)} {
		for i := 0; i+32 <= len(text); i += 16 {
			s.forms = append(s.forms, text[i:i+32])
		}
	}
	return s
}

// randomBytes returns n random bytes.
func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("reading random bytes: %v", err)
	}
	return b
}

// stackTrace matches what a Go panic or stack dump prints.
var stackTrace = regexp.MustCompile(`goroutine \d+ \[|panic: |\.go:\d+|runtime\.gopanic`)

// TestNoSecretsInAnswersOrLogs runs a full life: push certificate upload,
// enrollment with an unlock token, a user channel, bootstrap token escrow,
// commands with pushes, migration, an impersonator, bad input and wrong
// API keys, with webhook and DM forwarding to failing servers and debug
// logging on. Then it scans every answer and every log line: no private
// key, unlock token, bootstrap token or API key, and no stack trace. The
// one answer allowed to carry a secret is GetBootstrapToken to the device
// that escrowed it: that is the protocol.
func TestNoSecretsInAnswersOrLogs(t *testing.T) {
	for _, be := range allBackends {
		t.Run(be.name, func(t *testing.T) { testNoSecrets(t, be) })
	}
}

func testNoSecrets(t *testing.T, be backend) {
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		http.Error(w, "upstream broken", http.StatusBadGateway)
	}))
	defer failing.Close()
	apns := apnstest.NewServer(t, nil)
	s, _ := launch(t, launchConfig{storage: be.flags(t), extra: []string{
		"-debug", "-migration", "-apns-url", apns.URL, "-push-timeout", "5s",
		"-webhook-url", failing.URL + "/hook", "-webhook-retries", "0",
		"-dm", failing.URL + "/dm/", "-auth-proxy-url", failing.URL + "/proxy/",
		"-escrowkeyunlock-url", failing.URL + "/escrow",
	}})
	rec := &recorder{next: http.DefaultTransport}
	client := &http.Client{Transport: rec}
	tr := &simulator.Transport{URL: s.url + "/mdm", Client: client}
	ctx := context.Background()

	topic := storagetest.NewTopic()
	certPEM, keyPEM := storagetest.NewPushCert(t, topic)
	otherCert, _ := storagetest.NewPushCert(t, storagetest.NewTopic())
	unlock := randomBytes(t, 48)
	bootstrap := randomBytes(t, 40)
	migratedUnlock := randomBytes(t, 48)
	escrowKey := "ESCROW-" + hex.EncodeToString(randomBytes(t, 12))
	secrets := []secret{
		keySecret(t, "push certificate private key", keyPEM),
		bytesSecret("unlock token", unlock),
		bytesSecret("migrated unlock token", migratedUnlock),
		bytesSecret("bootstrap token", bootstrap),
		{"API key", []string{testAPIKey, base64.StdEncoding.EncodeToString([]byte("nanomdm:" + testAPIKey))}},
		{"escrow key", []string{escrowKey}},
	}

	api := func(method, path string, body []byte, key string) int {
		t.Helper()
		req, err := http.NewRequest(method, s.url+path, bytes.NewReader(body))
		if err != nil {
			t.Fatalf("building request: %v", err)
		}
		if key != "" {
			req.SetBasicAuth("nanomdm", key)
		}
		if strings.HasPrefix(path, "/v1/escrowkeyunlock") {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	// Push certificate: a good upload, a mismatched pair, an encrypted key.
	if code := api(http.MethodPut, "/v1/pushcert", append(append([]byte{}, certPEM...), keyPEM...), testAPIKey); code != 200 {
		t.Fatalf("uploading the push certificate: %d", code)
	}
	api(http.MethodPut, "/v1/pushcert", append(append([]byte{}, otherCert...), keyPEM...), testAPIKey)
	api(http.MethodPut, "/v1/pushcert", keyPEM, testAPIKey)
	api(http.MethodGet, "/v1/pushcert?topic="+url.QueryEscape(topic), nil, testAPIKey)
	api(http.MethodPut, "/v1/pushcert", append(append([]byte{}, certPEM...), keyPEM...), "wrong-"+testAPIKey)

	// A device enrolls with an unlock token, escrows a bootstrap token and
	// has a user channel.
	id, err := s.ca.Issue("secret device")
	if err != nil {
		t.Fatalf("issuing identity: %v", err)
	}
	dev := simulator.NewDevice(tr, id)
	dev.Topic = topic
	if err := dev.Authenticate(ctx); err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	tu := dev.Channel.TokenUpdateMessage()
	tu.UnlockToken = unlock
	if _, err := dev.Channel.Checkin(ctx, tu); err != nil {
		t.Fatalf("TokenUpdate with unlock token: %v", err)
	}
	user := dev.User("SECRET-USER", "sam")
	if err := user.TokenUpdate(ctx); err != nil {
		t.Fatalf("user TokenUpdate: %v", err)
	}
	if _, err := setBootstrapToken(dev.Channel, bootstrap); err != nil {
		t.Fatalf("SetBootstrapToken: %v", err)
	}
	if got := bootstrapTokenOf(t, dev.Channel); !bytes.Equal(got, bootstrap) {
		t.Fatalf("GetBootstrapToken: have %x, want the escrowed token", got)
	}
	allowedAnswer := len(rec.all) - 1 // the GetBootstrapToken answer just recorded

	// Commands, with pushes to the (untrusted) APNs, answered in every way.
	for i, status := range []string{mdm.StatusAcknowledged, mdm.StatusError, mdm.StatusNotNow} {
		cmd, _ := mdm.NewCommand(fmt.Sprintf("secret-%s-%d", be.name, i), "SecurityInfo", nil)
		api(http.MethodPut, "/v1/enqueue/"+dev.UDID()+","+user.ID(), cmd.Raw, testAPIKey)
		got, err := dev.Channel.Idle(ctx)
		if err != nil || got == nil {
			t.Fatalf("fetching command %d: %v", i, err)
		}
		if _, err := dev.Channel.Send(ctx, simulator.Report{CommandUUID: got.CommandUUID, Status: status, RequestType: "SecurityInfo"}); err != nil {
			t.Fatalf("answering command %d: %v", i, err)
		}
	}
	user.Drain(ctx, simulator.Acknowledge, 10)
	api(http.MethodPost, "/v1/push/"+dev.UDID()+","+user.ID()+",NO-SUCH-DEVICE", nil, testAPIKey)
	api(http.MethodPut, "/v1/enqueue/"+dev.UDID(), []byte("<plist>not a command"), testAPIKey)
	api(http.MethodPut, "/v1/enqueue/"+dev.UDID(), nil, "wrong")

	// DeclarativeManagement to the failing DM server, the auth proxy to a
	// failing upstream, an escrow key unlock to a failing service.
	dev.Channel.Checkin(ctx, map[string]any{"MessageType": "DeclarativeManagement", "UDID": dev.UDID(), "Endpoint": "tokens"})
	if req, err := tr.NewRequest(ctx, dev.Identity, nil, false); err == nil {
		req.URL, _ = url.Parse(s.url + "/authproxy/anything")
		req.Method = http.MethodGet
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	form := url.Values{"topic": {topic}, "serial": {dev.Serial}, "productType": {"iPhone14,2"},
		"escrowKey": {escrowKey}, "orgName": {"Org"}, "guid": {"G"}}
	api(http.MethodPost, "/v1/escrowkeyunlock", []byte(form.Encode()), testAPIKey)

	// Migration of another device whose TokenUpdate carries an unlock token.
	mid, _ := s.ca.Issue("migrated")
	mdev := simulator.NewDevice(tr, mid)
	mtu := mdev.Channel.TokenUpdateMessage()
	mtu.UnlockToken = migratedUnlock
	for _, m := range []any{mdev.AuthenticateMessage(), mtu} {
		raw, _ := mdm.EncodePlist(m)
		api(http.MethodPut, "/migration", raw, testAPIKey)
	}

	// An impersonator asks for the victim's bootstrap token and sends a
	// TokenUpdate; bad input of every kind.
	other, _ := s.ca.Issue("impersonator")
	imp := simulator.NewDeviceWithUDID(tr, other, dev.UDID())
	getBootstrapToken(imp.Channel)
	imp.Channel.Checkin(ctx, imp.Channel.TokenUpdateMessage())
	for _, body := range [][]byte{[]byte("garbage"), []byte("bplist00garbage"), []byte("<plist><dict><key>MessageType</key><string>Bogus</string></dict></plist>")} {
		tr.Send(ctx, dev.Identity, body, true)
		tr.Send(ctx, dev.Identity, body, false)
		tr.Send(ctx, nil, body, true)
	}

	// Everything an operator can read back: inspection, metrics, health.
	for _, path := range []string{
		"/v1/enrollments", "/v1/enrollments/" + dev.UDID() + "/queue", "/v1/enrollments/" + url.PathEscape(user.ID()) + "/queue",
		"/v1/enrollments/" + mdev.UDID() + "/queue", "/v1/commands/secret-" + be.name + "-0/results",
		"/v1/commands/secret-" + be.name + "-2/results", "/metrics", "/healthz", "/readyz", "/version",
	} {
		api(http.MethodGet, path, nil, testAPIKey)
	}

	s.stop(t) // flushes the webhook, whose failures are logged
	logs := s.logs.String()
	if len(rec.all) < 30 {
		t.Fatalf("recorded only %d answers: the scenario did not run", len(rec.all))
	}
	// The scan must be able to see a secret where one is allowed.
	if !containsAny(rec.all[allowedAnswer].text, bytesSecret("", bootstrap).forms) {
		t.Errorf("the scan does not find the bootstrap token in the GetBootstrapToken answer:\n%s", rec.all[allowedAnswer].text)
	}
	if !strings.Contains(logs, "level=debug") {
		t.Errorf("no debug lines logged: the scan would miss them")
	}
	for _, sec := range secrets {
		for _, form := range sec.forms {
			if strings.Contains(logs, form) {
				t.Errorf("the log carries the %s (%q)", sec.name, form)
				break
			}
		}
		if out := s.stdout.String(); out != "" && containsAny(out, sec.forms) {
			t.Errorf("stdout carries the %s", sec.name)
		}
		for i, a := range rec.all {
			if i == allowedAnswer && sec.name == "bootstrap token" {
				continue
			}
			if containsAny(a.text, sec.forms) {
				t.Errorf("answer %d to %s carries the %s:\n%s", i, a.what, sec.name, a.text)
			}
		}
	}
	if m := stackTrace.FindString(logs); m != "" {
		t.Errorf("the log carries a stack trace (%q)", m)
	}
	for i, a := range rec.all {
		if m := stackTrace.FindString(a.text); m != "" {
			t.Errorf("answer %d to %s carries a stack trace (%q):\n%s", i, a.what, m, a.text)
		}
	}
}

func containsAny(s string, forms []string) bool {
	for _, f := range forms {
		if f != "" && strings.Contains(s, f) {
			return true
		}
	}
	return false
}
