package docs_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/groob/plist"
)

// quickstartCommands are the simulator steps of docs/quickstart.md, as
// written there; TestQuickstartSimulator runs the same steps (on a free
// port and in a temporary directory).
var quickstartCommands = []string{
	"go run ./cmd/mdmsim ca -out dev",
	"go run ./cmd/nanomdm -ca dev/ca.pem -api devkey",
	"go run ./cmd/mdmsim device -url http://localhost:9000/mdm -ca dev -udid 1111-2222",
	"python3 tools/cmdr.py -u 4f0c5a2e-0000-4000-8000-000000000001 ProfileList",
	"curl -u nanomdm:devkey -T - 'http://localhost:9000/v1/enqueue/1111-2222?nopush=1'",
	"curl -u nanomdm:devkey http://localhost:9000/v1/push/1111-2222",
	"go run ./cmd/mdmsim device -url http://localhost:9000/mdm -ca dev -udid 1111-2222 -enroll=false",
	"-cert-header X-Client-Cert",
	"go run ./cmd/mdmsim device -url http://localhost:9000/mdm -ca dev -udid 3333-4444 -cert-header X-Client-Cert",
}

// TestQuickstartSimulator follows the simulator path of
// docs/quickstart.md with the built commands: a throwaway CA, the
// server, a simulated device enrolling, cmdr.py's command enqueued,
// pushed (no push certificate: the documented errors) and acknowledged,
// then the client-certificate header alternative.
func TestQuickstartSimulator(t *testing.T) {
	guide := string(readRepoFile(t, "docs/quickstart.md"))
	for _, c := range quickstartCommands {
		if !strings.Contains(guide, c) {
			t.Errorf("docs/quickstart.md no longer shows %q: update the doc or this test so they agree", c)
		}
	}

	server, sim := commandBinary(t, "nanomdm"), commandBinary(t, "mdmsim")
	dir := t.TempDir()
	dev := filepath.Join(dir, "dev")
	if out := runTool(t, sim, "ca", "-out", dev); !strings.Contains(out, "wrote") {
		t.Errorf("mdmsim ca printed %q, want it to say what it wrote", out)
	}
	srv := startNanoMDM(t, server, "-ca", filepath.Join(dev, "ca.pem"), "-api", "devkey", "-storage-dsn", filepath.Join(dir, "db"))

	out := runTool(t, sim, "device", "-url", srv.url+"/mdm", "-ca", dev, "-udid", "1111-2222")
	for _, want := range []string{"enrolled 1111-2222", "1111-2222: no commands queued"} {
		if !strings.Contains(out, want) {
			t.Errorf("mdmsim device printed %q, want %q", out, want)
		}
	}

	const uuid1, uuid2 = "4f0c5a2e-0000-4000-8000-000000000001", "4f0c5a2e-0000-4000-8000-000000000002"
	status, answer := do(t, http.MethodPut, srv.url+"/v1/enqueue/1111-2222?nopush=1",
		cmdrOutput(t, "-u", uuid1, "ProfileList"), "nanomdm", "devkey", nil)
	var resp struct {
		Status map[string]struct {
			CommandError string `json:"command_error"`
			PushError    string `json:"push_error"`
		} `json:"status"`
		NoPush      bool   `json:"no_push"`
		CommandUUID string `json:"command_uuid"`
		RequestType string `json:"request_type"`
	}
	if err := json.Unmarshal([]byte(answer), &resp); err != nil || status != http.StatusOK || !resp.NoPush ||
		resp.CommandUUID != uuid1 || resp.RequestType != "ProfileList" {
		t.Errorf("enqueue with nopush answered %d %s (%v), want 200 with no_push, the command UUID and ProfileList", status, answer, err)
	}

	// Without a push certificate the command is queued and the push fails: 207.
	status, answer = do(t, http.MethodPut, srv.url+"/v1/enqueue/1111-2222",
		cmdrOutput(t, "-u", uuid2, "DeviceInformation"), "nanomdm", "devkey", nil)
	resp.Status = nil
	if err := json.Unmarshal([]byte(answer), &resp); err != nil || status != http.StatusMultiStatus ||
		!strings.Contains(resp.Status["1111-2222"].PushError, "no push certificate") {
		t.Errorf("enqueue with push answered %d %s (%v), want 207 with a push_error about the missing push certificate", status, answer, err)
	}
	status, answer = do(t, http.MethodGet, srv.url+"/v1/push/1111-2222", nil, "nanomdm", "devkey", nil)
	if status != http.StatusInternalServerError || !strings.Contains(answer, "no push certificate") {
		t.Errorf("push answered %d %s, want 500 with a push_error about the missing push certificate", status, answer)
	}
	if status, _ := do(t, http.MethodGet, srv.url+"/v1/push/1111-2222", nil, "nanomdm", "wrong", nil); status != http.StatusUnauthorized {
		t.Errorf("push with a wrong key answered %d, want 401", status)
	}

	out = runTool(t, sim, "device", "-url", srv.url+"/mdm", "-ca", dev, "-udid", "1111-2222", "-enroll=false")
	for _, want := range []string{"1111-2222: acknowledged ProfileList " + uuid1, "1111-2222: acknowledged DeviceInformation " + uuid2} {
		if !strings.Contains(out, want) {
			t.Errorf("mdmsim device printed %q, want %q", out, want)
		}
	}
	out = runTool(t, sim, "device", "-url", srv.url+"/mdm", "-ca", dev, "-udid", "1111-2222", "-enroll=false")
	if !strings.Contains(out, "no commands queued") {
		t.Errorf("second poll printed %q, want no commands queued", out)
	}

	// The proxy alternative: the device certificate in a header.
	srv2 := startNanoMDM(t, server, "-ca", filepath.Join(dev, "ca.pem"), "-api", "devkey",
		"-storage-dsn", filepath.Join(dir, "db2"), "-cert-header", "X-Client-Cert")
	out = runTool(t, sim, "device", "-url", srv2.url+"/mdm", "-ca", dev, "-udid", "3333-4444", "-cert-header", "X-Client-Cert")
	if !strings.Contains(out, "enrolled 3333-4444") {
		t.Errorf("mdmsim device -cert-header printed %q, want enrolled 3333-4444", out)
	}
}

// TestEnrollmentProfile checks docs/enroll.mobileconfig: a SCEP payload
// and an MDM payload that uses its identity, signs its messages, and
// points at our MDM endpoint.
func TestEnrollmentProfile(t *testing.T) {
	raw := readRepoFile(t, "docs/enroll.mobileconfig")
	var profile map[string]any
	if err := plist.Unmarshal(raw, &profile); err != nil {
		t.Fatalf("docs/enroll.mobileconfig is not a plist: %v", err)
	}
	if profile["PayloadType"] != "Configuration" || profile["PayloadVersion"] != uint64(1) {
		t.Errorf("top level PayloadType %v PayloadVersion %#v, want Configuration 1", profile["PayloadType"], profile["PayloadVersion"])
	}
	uuids := map[string]bool{}
	idents := map[string]bool{}
	note := func(p map[string]any) {
		u, _ := p["PayloadUUID"].(string)
		id, _ := p["PayloadIdentifier"].(string)
		if u == "" || id == "" || uuids[u] || idents[id] {
			t.Errorf("payload %v: PayloadUUID %q and PayloadIdentifier %q must be present and unique", p["PayloadType"], u, id)
		}
		uuids[u], idents[id] = true, true
	}
	note(profile)
	content, _ := profile["PayloadContent"].([]any)
	payloads := map[string]map[string]any{}
	for _, c := range content {
		p, _ := c.(map[string]any)
		note(p)
		typ, _ := p["PayloadType"].(string)
		payloads[typ] = p
	}
	scep, mdmPayload := payloads["com.apple.security.scep"], payloads["com.apple.mdm"]
	if scep == nil || mdmPayload == nil {
		t.Fatalf("want a com.apple.security.scep and a com.apple.mdm payload, have %v", keysOfMaps(payloads))
	}
	scepContent, _ := scep["PayloadContent"].(map[string]any)
	for _, k := range []string{"URL", "Challenge", "Keysize", "Key Type", "Key Usage"} {
		if scepContent[k] == nil {
			t.Errorf("SCEP payload has no %s", k)
		}
	}
	if mdmPayload["IdentityCertificateUUID"] != scep["PayloadUUID"] {
		t.Errorf("MDM IdentityCertificateUUID %v is not the SCEP payload's UUID %v", mdmPayload["IdentityCertificateUUID"], scep["PayloadUUID"])
	}
	if mdmPayload["SignMessage"] != true {
		t.Errorf("MDM SignMessage = %v, want true (Mdm-Signature is the default identity)", mdmPayload["SignMessage"])
	}
	for _, k := range []string{"ServerURL", "CheckInURL"} {
		s, _ := mdmPayload[k].(string)
		u, err := url.Parse(s)
		if err != nil || u.Scheme != "https" || (u.Path != "/mdm" && u.Path != "/checkin") {
			t.Errorf("MDM %s = %q, want an https URL of /mdm or /checkin", k, s)
		}
	}
	if topic, _ := mdmPayload["Topic"].(string); !strings.HasPrefix(topic, "com.apple.mgmt.") {
		t.Errorf("MDM Topic %q does not start with com.apple.mgmt.", topic)
	}
	caps, _ := mdmPayload["ServerCapabilities"].([]any)
	if len(caps) == 0 {
		t.Errorf("MDM payload has no ServerCapabilities")
	}
	if r, _ := mdmPayload["AccessRights"].(uint64); r == 0 || r > 8191 {
		t.Errorf("MDM AccessRights = %v, want 1..8191", mdmPayload["AccessRights"])
	}
	for _, placeholder := range []string{"REPLACE-WITH-SCEP-CHALLENGE", "REPLACE-WITH-PUSH-TOPIC", "mdm.example.com", "scep.example.com"} {
		if !strings.Contains(string(raw), placeholder) {
			t.Errorf("docs/enroll.mobileconfig lacks the placeholder %s that docs/quickstart.md tells operators to replace", placeholder)
		}
	}
}

func keysOfMaps(m map[string]map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// enrollQuickstartCommands are the short-path steps of docs/quickstart.md;
// TestQuickstartEnroll runs them.
var enrollQuickstartCommands = []string{
	"go run ./cmd/mdmsim ca -out dev",
	"go run ./cmd/nanomdm -api devkey -public-url http://localhost:9000 -enroll -enroll-topic com.apple.mgmt.External.trial -scep-ca-cert dev/ca.pem -scep-ca-key dev/ca.key",
	"go run ./cmd/mdmsim device -enroll-url http://localhost:9000/mdm/enroll -ca dev -udid 5555-6666",
	"go run ./cmd/mdmsim device -url http://localhost:9000/mdm -ca dev -udid 5555-6666 -enroll=false",
}

// TestQuickstartEnroll follows the short path of docs/quickstart.md with
// the built commands: a CA from mdmsim, the server with the profile and
// the embedded SCEP server and no -ca, a simulated device enrolling
// through the profile, then taking a command with the identity it got.
func TestQuickstartEnroll(t *testing.T) {
	guide := string(readRepoFile(t, "docs/quickstart.md"))
	for _, c := range enrollQuickstartCommands {
		if !strings.Contains(guide, c) {
			t.Errorf("docs/quickstart.md no longer shows %q: update the doc or this test so they agree", c)
		}
	}
	server, sim := commandBinary(t, "nanomdm"), commandBinary(t, "mdmsim")
	dir := t.TempDir()
	dev := filepath.Join(dir, "dev")
	runTool(t, sim, "ca", "-out", dev)
	addr := freePort(t)
	srv, err := startOnce(t, server, addr, "-api", "devkey", "-public-url", "http://"+addr, "-enroll",
		"-enroll-topic", "com.apple.mgmt.External.trial", "-scep-ca-cert", filepath.Join(dev, "ca.pem"),
		"-scep-ca-key", filepath.Join(dev, "ca.key"), "-storage-dsn", filepath.Join(dir, "db"))
	if err != nil {
		t.Fatal(err)
	}
	out := runTool(t, sim, "device", "-enroll-url", srv.url+"/mdm/enroll", "-ca", dev, "-udid", "5555-6666")
	if !strings.Contains(out, "enrolled 5555-6666 through") {
		t.Fatalf("mdmsim device -enroll-url printed %q, want enrolled 5555-6666", out)
	}
	const uuid = "4f0c5a2e-0000-4000-8000-000000000005"
	if status, answer := do(t, http.MethodPut, srv.url+"/v1/enqueue/5555-6666?nopush=1",
		cmdrOutput(t, "-u", uuid, "ProfileList"), "nanomdm", "devkey", nil); status != http.StatusOK {
		t.Fatalf("enqueue answered %d %s", status, answer)
	}
	// The identity SCEP issued was kept: the device answers with it.
	out = runTool(t, sim, "device", "-url", srv.url+"/mdm", "-ca", dev, "-udid", "5555-6666", "-enroll=false")
	if !strings.Contains(out, "5555-6666: acknowledged ProfileList "+uuid) {
		t.Errorf("mdmsim device printed %q, want the command acknowledged", out)
	}
}
