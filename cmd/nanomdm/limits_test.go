package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/mdm/simulator"
	"github.com/nanomdm/nanomdm/storage/storagetest"
)

// The bounds of mdm/internal/plistcheck.DefaultLimits, which the MDM
// endpoints apply to every device plist. They are repeated here (the
// package is internal to mdm) so that a change to them shows up as a
// failing test rather than silently moving the bound.
const (
	plistMaxDepth    = 32
	plistMaxElements = 100_000
)

const xmlProlog = `<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
	`<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">` + "\n"

// idleWith returns an XML Idle report of the device channel udid whose
// dict also holds key "Extra" with the XML value extra.
func idleWith(udid, extra string) []byte {
	return []byte(xmlProlog + `<plist version="1.0"><dict><key>Status</key><string>Idle</string>` +
		`<key>UDID</key><string>` + udid + `</string><key>Extra</key>` + extra + `</dict></plist>`)
}

// paddedIdle returns an Idle report of exactly n bytes.
func paddedIdle(t *testing.T, udid string, n int) []byte {
	t.Helper()
	base := len(idleWith(udid, "<string></string>"))
	if n < base {
		t.Fatalf("cannot build a %d-byte report: the smallest is %d", n, base)
	}
	return idleWith(udid, "<string>"+strings.Repeat("p", n-base)+"</string>")
}

// sendRaw posts body as dev would (signed with its identity) and returns
// the answer's status.
func sendRaw(t *testing.T, dev *simulator.Device, body []byte, checkin bool) int {
	t.Helper()
	_, err := dev.Transport.Send(context.Background(), dev.Identity, body, checkin)
	return mdmStatus(t, err)
}

// apiStatus sends an authenticated API request and returns its status.
func apiStatus(t *testing.T, s *server, method, path string, body []byte) int {
	t.Helper()
	req, err := http.NewRequest(method, s.url+path, strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("building request: %v", err)
	}
	req.SetBasicAuth("nanomdm", testAPIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// commandOfSize returns a command plist of exactly n bytes.
func commandOfSize(t *testing.T, uuid string, n int) []byte {
	t.Helper()
	build := func(pad string) []byte {
		return []byte(xmlProlog + `<plist version="1.0"><dict><key>CommandUUID</key><string>` + uuid +
			`</string><key>Command</key><dict><key>RequestType</key><string>ProfileList</string>` +
			`<key>Pad</key><string>` + pad + `</string></dict></dict></plist>`)
	}
	base := len(build(""))
	if n < base {
		t.Fatalf("cannot build a %d-byte command: the smallest is %d", n, base)
	}
	return build(strings.Repeat("p", n-base))
}

// TestBodyLimit: with -max-body-bytes N, device and API bodies of exactly
// N bytes are served and N+1 bytes are answered 413.
func TestBodyLimit(t *testing.T) {
	const limit = 4096
	s := startServer(t, "-storage", "inmem", "-max-body-bytes", fmt.Sprint(limit))
	dev := enrolled(t, s, &simulator.Transport{URL: s.url + "/mdm"}, "body limit")
	if status := sendRaw(t, dev, paddedIdle(t, dev.UDID(), limit), false); status != http.StatusOK {
		t.Errorf("report of %d bytes: have %d, want 200", limit, status)
	}
	if status := sendRaw(t, dev, paddedIdle(t, dev.UDID(), limit+1), false); status != http.StatusRequestEntityTooLarge {
		t.Errorf("report of %d bytes: have %d, want 413", limit+1, status)
	}
	if status := apiStatus(t, s, http.MethodPut, "/v1/enqueue/"+dev.UDID()+"?nopush=1", commandOfSize(t, "limit-at", limit)); status != http.StatusOK {
		t.Errorf("enqueue of %d bytes: have %d, want 200", limit, status)
	}
	if status := apiStatus(t, s, http.MethodPut, "/v1/enqueue/"+dev.UDID()+"?nopush=1", commandOfSize(t, "limit-over", limit+1)); status != http.StatusRequestEntityTooLarge {
		t.Errorf("enqueue of %d bytes: have %d, want 413", limit+1, status)
	}
	wantCommands(t, dev.Channel, "limit-at")
}

// rawRequest writes a GET of /version whose request line and headers
// (terminating blank line included) are exactly n bytes, and returns the
// status, or 0 if the server closed the connection without answering.
func rawRequest(t *testing.T, addr string, n int) int {
	t.Helper()
	head := "GET /version HTTP/1.1\r\nHost: x\r\nX-Pad: "
	tail := "\r\n\r\n"
	pad := n - len(head) - len(tail)
	if pad < 0 {
		t.Fatalf("cannot build a %d-byte request", n)
	}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dialing: %v", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, head+strings.Repeat("h", pad)+tail); err != nil {
		t.Fatalf("writing request: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestHeaderLimit: with -max-header-bytes N a request whose headers take
// N bytes is served and one past the limit is answered 431. net/http
// grants 4096 bytes of slack above MaxHeaderBytes for its read buffer, so
// "past the limit" is N+4096+1 bytes.
func TestHeaderLimit(t *testing.T) {
	const limit = 16 << 10
	const slack = 4096
	s := startServer(t, "-storage", "inmem", "-max-header-bytes", fmt.Sprint(limit))
	addr := strings.TrimPrefix(s.url, "http://")
	for _, n := range []int{limit, limit + slack} {
		if status := rawRequest(t, addr, n); status != http.StatusOK {
			t.Errorf("request with %d bytes of headers: have %d, want 200", n, status)
		}
	}
	if status := rawRequest(t, addr, limit+slack+1); status != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("request with %d bytes of headers: have %d, want 431", limit+slack+1, status)
	}
}

// nested returns depth arrays nested inside each other around a leaf.
func nested(depth int) string {
	return strings.Repeat("<array>", depth) + "<true/>" + strings.Repeat("</array>", depth)
}

// nestedBinary is nested as a binary plist value.
func nestedBinary(depth int) any {
	var v any = true
	for i := 0; i < depth; i++ {
		v = []any{v}
	}
	return v
}

// TestPlistBounds sends device reports at and just past the plist nesting
// and element bounds, in XML and binary form: at the bound the report is
// served (200), past it refused (400).
func TestPlistBounds(t *testing.T) {
	s := startServer(t, "-storage", "inmem")
	dev := enrolled(t, s, &simulator.Transport{URL: s.url + "/mdm"}, "plist bounds")
	udid := dev.UDID()
	// The report's own dict is one level, so the extra value may nest
	// plistMaxDepth-1 arrays.
	binaryIdle := func(extra any) []byte {
		b, err := storagetest.EncodeBinaryPlist(map[string]any{"Status": "Idle", "UDID": udid, "Extra": extra})
		if err != nil {
			t.Fatalf("encoding binary plist: %v", err)
		}
		return b
	}
	// Elements: the root dict, three keys and two strings, the array,
	// then the array's members.
	const fixed = 7
	members := func(n int) string { return "<array>" + strings.Repeat("<true/>", n) + "</array>" }
	for _, tc := range []struct {
		name string
		body []byte
		want int
	}{
		{"xml depth at bound", idleWith(udid, nested(plistMaxDepth-1)), http.StatusOK},
		{"xml depth over bound", idleWith(udid, nested(plistMaxDepth)), http.StatusBadRequest},
		{"binary depth at bound", binaryIdle(nestedBinary(plistMaxDepth - 1)), http.StatusOK},
		{"binary depth over bound", binaryIdle(nestedBinary(plistMaxDepth)), http.StatusBadRequest},
		{"xml elements at bound", idleWith(udid, members(plistMaxElements-fixed)), http.StatusOK},
		{"xml elements over bound", idleWith(udid, members(plistMaxElements-fixed+1)), http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if status := sendRaw(t, dev, tc.body, false); status != tc.want {
				t.Errorf("have %d, want %d", status, tc.want)
			}
		})
	}
}

// TestAPIMaxIDs: with -api-max-ids N, enqueue and push take N IDs and
// refuse N+1 with 400.
func TestAPIMaxIDs(t *testing.T) {
	const max = 3
	s := startServer(t, "-storage", "inmem", "-api-max-ids", fmt.Sprint(max))
	tr := &simulator.Transport{URL: s.url + "/mdm"}
	var ids []string
	for i := 0; i <= max; i++ {
		ids = append(ids, enrolled(t, s, tr, fmt.Sprintf("max ids %d", i)).UDID())
	}
	cmd := func(uuid string) []byte {
		c, err := mdm.NewCommand(uuid, "ProfileList", nil)
		if err != nil {
			t.Fatalf("building command: %v", err)
		}
		return c.Raw
	}
	if status := apiStatus(t, s, http.MethodPut, "/v1/enqueue/"+strings.Join(ids[:max], ",")+"?nopush=1", cmd("ids-at")); status != http.StatusOK {
		t.Errorf("enqueue to %d ids: have %d, want 200", max, status)
	}
	if status := apiStatus(t, s, http.MethodPut, "/v1/enqueue/"+strings.Join(ids, ",")+"?nopush=1", cmd("ids-over")); status != http.StatusBadRequest {
		t.Errorf("enqueue to %d ids: have %d, want 400", max+1, status)
	}
	// No push certificate is stored, so pushing fails per ID (500), but
	// the ID list itself is accepted.
	if status := apiStatus(t, s, http.MethodPost, "/v1/push/"+strings.Join(ids[:max], ","), nil); status == http.StatusBadRequest {
		t.Errorf("push to %d ids: have 400, want the list accepted", max)
	}
	if status := apiStatus(t, s, http.MethodPost, "/v1/push/"+strings.Join(ids, ","), nil); status != http.StatusBadRequest {
		t.Errorf("push to %d ids: have %d, want 400", max+1, status)
	}
}

// TestIDBounds checks the length and character rules of enrollment IDs
// and command UUIDs at their edges, through check-ins, reports and the
// API.
func TestIDBounds(t *testing.T) {
	s := startServer(t, "-storage", "inmem")
	tr := &simulator.Transport{URL: s.url + "/mdm"}
	ctx := context.Background()
	newDev := func(udid string) *simulator.Device {
		id, err := s.ca.Issue("id bounds")
		if err != nil {
			t.Fatalf("issuing identity: %v", err)
		}
		return simulator.NewDeviceWithUDID(tr, id, udid)
	}

	// A UDID of exactly mdm.MaxIDLength bytes enrolls and gets commands;
	// the user channel's part may be as long again.
	long := strings.Repeat("A", mdm.MaxIDLength)
	d := newDev(long)
	if err := d.Enroll(ctx); err != nil {
		t.Fatalf("enrolling a %d-byte UDID: %v", len(long), err)
	}
	user := d.User(strings.Repeat("U", mdm.MaxIDLength), "user")
	if err := user.TokenUpdate(ctx); err != nil {
		t.Fatalf("user channel with a %d-byte UserID: %v", mdm.MaxIDLength, err)
	}
	enqueueOne(t, s, "long-id-device", long)
	enqueueOne(t, s, "long-id-user", user.ID())
	wantCommands(t, d.Channel, "long-id-device")
	wantCommands(t, user, "long-id-user")

	over := strings.Repeat("B", mdm.MaxIDLength+1)
	for _, tc := range []struct {
		name string
		udid string
	}{
		{"UDID one byte too long", over},
		{"slash", "A/B"},
		{"backslash", `A\B`},
		{"dot", "."},
		{"dot dot", ".."},
		{"tab", "A\tB"},
		{"DEL", "A\x7fB"},
		{"C1 control", "A\u0085B"},
		{"colon in a device ID", "A:B"},
	} {
		t.Run("check-in/"+tc.name, func(t *testing.T) {
			if status := mdmStatus(t, newDev(tc.udid).Authenticate(ctx)); status != http.StatusBadRequest {
				t.Errorf("Authenticate with UDID %q: have %d, want 400", tc.udid, status)
			}
		})
	}
	t.Run("check-in/UserID one byte too long", func(t *testing.T) {
		u := d.User(over, "user")
		if status := mdmStatus(t, u.TokenUpdate(ctx)); status != http.StatusBadRequest {
			t.Errorf("have %d, want 400", status)
		}
	})

	cmd, _ := mdm.NewCommand("bounds-api", "ProfileList", nil)
	for _, tc := range []struct {
		name, path string
		want       int
	}{
		{"ID at the bound", long, http.StatusOK},
		{"ID one byte too long", over, http.StatusBadRequest},
		{"user part one byte too long", long + ":" + over, http.StatusBadRequest},
		{"escaped slash", "A%2FB", http.StatusBadRequest},
		// http.ServeMux cleans a literal ".." out of the path and
		// redirects, so it never reaches the handler.
		{"dot dot", "..", http.StatusNotFound},
		{"escaped dot dot", "%2E%2E", http.StatusBadRequest},
		{"dot", "%2E", http.StatusBadRequest},
		{"escaped NUL", "A%00B", http.StatusBadRequest},
		{"empty part", "A,,B", http.StatusBadRequest},
		{"empty user part", long + ":", http.StatusBadRequest},
	} {
		t.Run("api/"+tc.name, func(t *testing.T) {
			// Each call uses the command UUID afresh: on success it is
			// queued once.
			if status := apiStatus(t, s, http.MethodPut, "/v1/enqueue/"+tc.path+"?nopush=1", cmd.Raw); status != tc.want {
				t.Errorf("enqueue to %q: have %d, want %d", tc.path, status, tc.want)
			}
		})
	}
	wantCommands(t, d.Channel, "bounds-api")

	// Command UUIDs follow the same rules as ID parts.
	for _, tc := range []struct {
		name, uuid string
		want       int
	}{
		{"UUID at the bound", strings.Repeat("c", mdm.MaxCommandUUIDLength), http.StatusOK},
		{"UUID one byte too long", strings.Repeat("c", mdm.MaxCommandUUIDLength+1), http.StatusBadRequest},
		{"UUID with a slash", "a/b", http.StatusBadRequest},
		{"UUID dot dot", "..", http.StatusBadRequest},
		{"UUID with a control character", "a&#x7f;b", http.StatusBadRequest},
	} {
		t.Run("uuid/"+tc.name, func(t *testing.T) {
			body := []byte(xmlProlog + `<plist version="1.0"><dict><key>CommandUUID</key><string>` + tc.uuid +
				`</string><key>Command</key><dict><key>RequestType</key><string>ProfileList</string></dict></dict></plist>`)
			if status := apiStatus(t, s, http.MethodPut, "/v1/enqueue/"+long+"?nopush=1", body); status != tc.want {
				t.Errorf("enqueue of UUID %q: have %d, want %d", tc.uuid, status, tc.want)
			}
		})
	}
	wantCommands(t, d.Channel, strings.Repeat("c", mdm.MaxCommandUUIDLength))
}
