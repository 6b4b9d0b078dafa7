package api_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/http/api"
	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/storage/inmem"
	"github.com/nanomdm/nanomdm/storage/storagetest"
)

// inspectMux mounts the inspection handlers over s as cmd/nanomdm does
// (without authentication).
func inspectMux(s *inmem.Storage) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /v1/enrollments", api.EnrollmentsHandler(s, api.WithMaxIDs(5)))
	mux.Handle("/v1/enrollments/{id}/queue", api.QueueHandler(s))
	mux.Handle("DELETE /v1/enrollments/{id}/queue/{uuid}", api.RemoveQueuedCommandHandler(s))
	mux.Handle("GET /v1/commands/{uuid}/results", api.CommandResultsHandler(s))
	return mux
}

// call makes a request to h and decodes a JSON answer into v (if not
// nil), returning the status.
func call(t *testing.T, h http.Handler, method, target string, v any) int {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	if ct := rec.Header().Get("Content-Type"); (rec.Code != http.StatusMethodNotAllowed || strings.Contains(target, "/queue")) && ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q, want application/json", method, target, ct)
	}
	if v != nil && rec.Code == http.StatusOK {
		if err := json.Unmarshal(rec.Body.Bytes(), v); err != nil {
			t.Fatalf("%s %s: decoding %q: %v", method, target, rec.Body.String(), err)
		}
	}
	return rec.Code
}

func TestEnrollmentsHandler(t *testing.T) {
	s := inmem.New()
	mux := inspectMux(s)
	dev := storagetest.NewDevice(t)
	dev.Enroll(t, s)
	if err := s.StoreBootstrapToken(dev.Request(), dev.SetBootstrapToken(t, []byte("token"))); err != nil {
		t.Fatal(err)
	}
	user := dev.NewUser(t)
	user.Enroll(t, s)
	other := storagetest.NewDevice(t)
	other.Enroll(t, s)
	if err := s.Disable(other.Request()); err != nil {
		t.Fatal(err)
	}
	all := []string{dev.ID(), user.ID(), other.ID()}
	sort.Strings(all)

	var page api.EnrollmentsResponse
	if code := call(t, mux, "GET", "/v1/enrollments", &page); code != http.StatusOK {
		t.Fatalf("list: status %d", code)
	}
	var have []string
	for _, e := range page.Enrollments {
		have = append(have, e.ID)
	}
	if strings.Join(have, ",") != strings.Join(all, ",") || page.NextCursor != "" {
		t.Fatalf("list: have %v (next %q), want %v and no next page", have, page.NextCursor, all)
	}
	for _, e := range page.Enrollments {
		if e.ID != user.ID() {
			continue
		}
		if e.ParentID != dev.ID() || e.SerialNumber != dev.SerialNumber || !e.Enabled || !e.BootstrapTokenEscrowed ||
			e.Topic != user.Topic || e.TokenUpdateTally != 1 || e.LastSeen == nil || e.Type != user.EnrollID.Type.String() {
			t.Errorf("user channel: have %+v", e)
		}
	}

	// Paging by 2 with the cursor.
	have = nil
	next := ""
	for i := 0; i < 5; i++ {
		var p api.EnrollmentsResponse
		if code := call(t, mux, "GET", "/v1/enrollments?limit=2&cursor="+url.QueryEscape(next), &p); code != http.StatusOK {
			t.Fatalf("page %d: status %d", i, code)
		}
		for _, e := range p.Enrollments {
			have = append(have, e.ID)
		}
		if next = p.NextCursor; next == "" {
			break
		}
	}
	if strings.Join(have, ",") != strings.Join(all, ",") {
		t.Errorf("paged: have %v, want %v", have, all)
	}

	// Filters.
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"?enabled=false", []string{other.ID()}},
		{"?serial_number=" + dev.SerialNumber, []string{dev.ID(), user.ID()}},
		{"?id=" + other.ID() + "," + dev.ID(), []string{dev.ID(), other.ID()}},
		{"?id=" + other.ID() + "&id=" + storagetest.RandomUUID(), []string{other.ID()}},
		{"?type=" + url.QueryEscape(user.EnrollID.Type.String()), []string{user.ID()}},
		{"?last_seen_before=" + time.Now().Add(-time.Hour).Format(time.RFC3339), nil},
		{"?last_seen_after=" + time.Now().Add(-time.Hour).Format(time.RFC3339Nano) + "&enabled=true", []string{dev.ID(), user.ID()}},
	} {
		var p api.EnrollmentsResponse
		if code := call(t, mux, "GET", "/v1/enrollments"+tc.query, &p); code != http.StatusOK {
			t.Errorf("%s: status %d", tc.query, code)
			continue
		}
		have := []string{}
		for _, e := range p.Enrollments {
			have = append(have, e.ID)
		}
		want := append([]string{}, tc.want...)
		sort.Strings(want)
		if strings.Join(have, ",") != strings.Join(want, ",") {
			t.Errorf("%s: have %v, want %v", tc.query, have, want)
		}
	}

	// Bad parameters are 400.
	for _, q := range []string{"?limit=0", "?limit=x", "?enabled=maybe", "?last_seen_before=yesterday", "?id=a,b,c,d,e,f"} {
		if code := call(t, mux, "GET", "/v1/enrollments"+q, nil); code != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", q, code)
		}
	}
	if code := call(t, mux, "POST", "/v1/enrollments", nil); code != http.StatusMethodNotAllowed {
		t.Errorf("POST: status %d, want 405", code)
	}
}

func TestQueueHandlers(t *testing.T) {
	s := inmem.New()
	mux := inspectMux(s)
	dev := storagetest.NewDevice(t)
	dev.Enroll(t, s)
	user := dev.NewUser(t)
	user.Enroll(t, s)
	var cmds []*mdm.Command
	for _, rt := range []string{"DeviceInformation", "ProfileList", "SecurityInfo"} {
		c := storagetest.NewCommand(t, rt)
		storagetest.Enqueue(t, s, c, dev)
		cmds = append(cmds, c)
	}
	storagetest.Enqueue(t, s, storagetest.NewCommand(t, "InstalledApplicationList"), user)
	storagetest.StoreReport(t, s, dev, mdm.StatusNotNow, cmds[0].CommandUUID)

	path := "/v1/enrollments/" + url.PathEscape(dev.ID()) + "/queue"
	var q api.QueueResponse
	if code := call(t, mux, "GET", path+"?limit=2", &q); code != http.StatusOK {
		t.Fatalf("queue: status %d", code)
	}
	if q.ID != dev.ID() || len(q.Commands) != 2 || q.NextCursor == "" {
		t.Fatalf("first page: have %+v", q)
	}
	first := q.Commands[0]
	if first.CommandUUID != cmds[0].CommandUUID || first.RequestType != "DeviceInformation" || first.Status != mdm.StatusNotNow ||
		first.NotNowCount != 1 || first.NotNowAt == nil || first.EnqueuedAt == nil {
		t.Errorf("NotNow command: have %+v", first)
	}
	if q.Commands[1].Status != "" || q.Commands[1].NotNowAt != nil {
		t.Errorf("pending command: have %+v", q.Commands[1])
	}
	var rest api.QueueResponse
	if code := call(t, mux, "GET", path+"?limit=2&cursor="+url.QueryEscape(q.NextCursor), &rest); code != http.StatusOK {
		t.Fatalf("second page: status %d", code)
	}
	if len(rest.Commands) != 1 || rest.Commands[0].CommandUUID != cmds[2].CommandUUID || rest.NextCursor != "" {
		t.Errorf("second page: have %+v", rest)
	}

	// Errors.
	for _, tc := range []struct {
		method, target string
		want           int
	}{
		{"GET", "/v1/enrollments/" + storagetest.RandomUUID() + "/queue", http.StatusNotFound},
		{"DELETE", "/v1/enrollments/" + storagetest.RandomUUID() + "/queue", http.StatusNotFound},
		{"GET", "/v1/enrollments/bad%2Fid/queue", http.StatusBadRequest},
		{"GET", path + "?cursor=nonsense", http.StatusBadRequest},
		{"PUT", path, http.StatusMethodNotAllowed},
	} {
		if code := call(t, mux, tc.method, tc.target, nil); code != tc.want {
			t.Errorf("%s %s: status %d, want %d", tc.method, tc.target, code, tc.want)
		}
	}

	// DELETE clears the device's queue and its user's.
	var cleared api.ClearQueueResponse
	if code := call(t, mux, "DELETE", path, &cleared); code != http.StatusOK || !cleared.QueueCleared || cleared.ID != dev.ID() {
		t.Fatalf("clear: status %d, %+v", code, cleared)
	}
	for _, c := range []*storagetest.Channel{dev, user} {
		var after api.QueueResponse
		call(t, mux, "GET", "/v1/enrollments/"+url.PathEscape(c.ID())+"/queue", &after)
		if len(after.Commands) != 0 {
			t.Errorf("queue of %s after clearing: %+v", c, after.Commands)
		}
	}
}

func TestCommandResultsHandler(t *testing.T) {
	s := inmem.New()
	mux := inspectMux(s)
	a, b := storagetest.NewDevice(t), storagetest.NewDevice(t)
	a.Binary = true
	cmd := storagetest.NewCommand(t, "DeviceInformation")
	for _, d := range []*storagetest.Channel{a, b} {
		d.Enroll(t, s)
	}
	storagetest.Enqueue(t, s, cmd, a, b)
	reports := map[string]*mdm.CommandResults{
		a.ID(): a.Report(t, mdm.StatusAcknowledged, cmd.CommandUUID),
		b.ID(): b.Report(t, mdm.StatusError, cmd.CommandUUID),
	}
	for id, rep := range reports {
		c := a
		if id == b.ID() {
			c = b
		}
		if err := s.StoreCommandReport(c.Request(), rep); err != nil {
			t.Fatal(err)
		}
	}
	path := "/v1/commands/" + cmd.CommandUUID + "/results"
	var res api.CommandResultsResponse
	if code := call(t, mux, "GET", path, &res); code != http.StatusOK {
		t.Fatalf("results: status %d", code)
	}
	if res.CommandUUID != cmd.CommandUUID || len(res.Results) != 2 {
		t.Fatalf("results: have %+v", res)
	}
	for _, r := range res.Results {
		want := reports[r.ID]
		if want == nil || r.Status != want.Status || !bytes.Equal(r.Result, want.Raw) {
			t.Errorf("result of %s: have %s %q, want %v", r.ID, r.Status, r.Result, want)
		}
	}

	var page api.CommandResultsResponse
	call(t, mux, "GET", path+"?limit=1&status_only=1", &page)
	if len(page.Results) != 1 || page.Results[0].Result != nil || page.NextCursor != page.Results[0].ID {
		t.Errorf("status-only page of 1: have %+v", page)
	}

	var none api.CommandResultsResponse
	if code := call(t, mux, "GET", "/v1/commands/"+storagetest.RandomUUID()+"/results", &none); code != http.StatusOK || none.Results == nil || len(none.Results) != 0 {
		t.Errorf("unknown command: status %d, %+v; want 200 and an empty list", code, none)
	}
	if code := call(t, mux, "GET", path+"?status_only=perhaps", nil); code != http.StatusBadRequest {
		t.Errorf("bad status_only: status %d, want 400", code)
	}
}
