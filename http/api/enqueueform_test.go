package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/nanomdm/nanomdm/http/api"
	"github.com/nanomdm/nanomdm/push"
	"github.com/nanomdm/nanomdm/storage/inmem"
	"github.com/nanomdm/nanomdm/storage/storagetest"
)

// knownPusher answers a push to the IDs it knows and push.ErrNoPushInfo
// (by leaving them out) for the others.
type knownPusher map[string]bool

func (k knownPusher) Push(_ context.Context, ids []string) (map[string]*push.Response, error) {
	out := map[string]*push.Response{}
	for _, id := range ids {
		if k[id] {
			out[id] = &push.Response{ID: "apns-" + id}
		}
	}
	return out, nil
}

// enqueueForm builds a multipart/form-data body as curl -F
// command=@cmd.plist -F ids=@ids.txt sends it. A nil command leaves its
// part out.
func enqueueForm(t *testing.T, command []byte, ids string) (body []byte, contentType string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	if command != nil {
		w, err := mw.CreateFormFile("command", "cmd.plist")
		if err != nil {
			t.Fatal(err)
		}
		w.Write(command)
	}
	w, err := mw.CreateFormFile("ids", "ids.txt")
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(ids))
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), mw.FormDataContentType()
}

// enqueueMux mounts the enqueue handler as cmd/nanomdm does, both routes.
func enqueueMux(s *inmem.Storage, p api.Pusher, opts ...api.Option) *http.ServeMux {
	opts = append(opts, api.WithPusher(p))
	h := api.EnqueueHandler(s, opts...)
	mux := http.NewServeMux()
	mux.Handle("/v1/enqueue/", http.StripPrefix("/v1/enqueue/", h))
	mux.Handle("/v1/enqueue", http.StripPrefix("/v1/enqueue", h))
	mux.Handle("/v1/enrollments/{id}/queue", api.QueueHandler(s))
	return mux
}

func send(h http.Handler, method, target, contentType string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// TestEnqueueFormMatchesPath sends the same requests to two identical
// servers, one with the IDs in the path and one as a multipart form, and
// wants the same status, the same JSON answer and the same queues.
func TestEnqueueFormMatchesPath(t *testing.T) {
	pathStore, formStore := inmem.New(), inmem.New()
	var devs []*storagetest.Channel
	pusher := knownPusher{}
	for i := 0; i < 3; i++ {
		d := storagetest.NewDevice(t)
		d.Enroll(t, pathStore)
		d.Enroll(t, formStore)
		devs = append(devs, d)
	}
	pusher[devs[0].ID()], pusher[devs[1].ID()] = true, true
	pathMux := enqueueMux(pathStore, pusher, api.WithMaxIDs(4))
	formMux := enqueueMux(formStore, pusher, api.WithMaxIDs(4))
	unknown := storagetest.RandomUUID()

	first := storagetest.NewCommand(t, "ProfileList")
	second := storagetest.NewCommand(t, "DeviceInformation")
	for _, tc := range []struct {
		name   string
		query  string
		cmd    []byte
		ids    []string
		status int
	}{
		{"pushed to all", "", []byte(first.Raw), []string{devs[0].ID(), devs[1].ID()}, http.StatusOK},
		{"one unknown, one without push info", "", []byte(second.Raw), []string{devs[0].ID(), devs[2].ID(), unknown, devs[0].ID()}, http.StatusMultiStatus},
		{"duplicate command", "", []byte(first.Raw), []string{devs[2].ID()}, http.StatusConflict},
		{"nopush", "?nopush=1", []byte(storagetest.NewCommand(t, "SecurityInfo").Raw), []string{devs[1].ID(), devs[2].ID()}, http.StatusOK},
		{"push only", "", nil, []string{devs[0].ID(), devs[2].ID()}, http.StatusMultiStatus},
		{"push only with nopush", "?nopush=1", nil, []string{devs[0].ID()}, http.StatusBadRequest},
		{"too many ids", "", []byte(storagetest.NewCommand(t, "ProfileList").Raw), []string{"a", "b", "c", "d", "e"}, http.StatusBadRequest},
		{"bad id", "", []byte(storagetest.NewCommand(t, "ProfileList").Raw), []string{devs[0].ID(), "a/b"}, http.StatusBadRequest},
		{"bad command", "", []byte("<plist><dict></dict></plist>"), []string{devs[0].ID()}, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			escaped := make([]string, len(tc.ids))
			for i, id := range tc.ids {
				escaped[i] = url.PathEscape(id)
			}
			byPath := send(pathMux, http.MethodPut, "/v1/enqueue/"+strings.Join(escaped, ",")+tc.query, "", tc.cmd)
			body, ct := enqueueForm(t, tc.cmd, "\n"+strings.Join(tc.ids, "\r\n")+"\n\n")
			byForm := send(formMux, http.MethodPost, "/v1/enqueue"+tc.query, ct, body)
			if byPath.Code != tc.status {
				t.Errorf("path form: status %d, want %d: %s", byPath.Code, tc.status, byPath.Body)
			}
			if byForm.Code != byPath.Code || byForm.Body.String() != byPath.Body.String() {
				t.Errorf("answers differ:\npath %d %s\nform %d %s", byPath.Code, byPath.Body, byForm.Code, byForm.Body)
			}
		})
	}
	for _, id := range []string{devs[0].ID(), devs[1].ID(), devs[2].ID(), unknown} {
		var a, b api.QueueResponse
		ca := call(t, pathMux, "GET", "/v1/enrollments/"+url.PathEscape(id)+"/queue", &a)
		cb := call(t, formMux, "GET", "/v1/enrollments/"+url.PathEscape(id)+"/queue", &b)
		if ca != cb || len(a.Commands) != len(b.Commands) {
			t.Fatalf("queue of %s: path store %d %+v, form store %d %+v", id, ca, a.Commands, cb, b.Commands)
		}
		for i := range a.Commands {
			if a.Commands[i].CommandUUID != b.Commands[i].CommandUUID || a.Commands[i].RequestType != b.Commands[i].RequestType {
				t.Errorf("queue of %s, entry %d: path store %+v, form store %+v", id, i, a.Commands[i], b.Commands[i])
			}
		}
	}
	var q api.QueueResponse
	call(t, formMux, "GET", "/v1/enrollments/"+url.PathEscape(devs[0].ID())+"/queue", &q)
	if len(q.Commands) != 2 {
		t.Errorf("queue of the first device: have %d commands, want 2", len(q.Commands))
	}
}

// TestEnqueueFormErrors wants a 400 (413 over the body limit) with a
// message naming the problem for each malformed form, and storage never
// reached.
func TestEnqueueFormErrors(t *testing.T) {
	cmd := []byte(storagetest.NewCommand(t, "ProfileList").Raw)
	good, goodCT := enqueueForm(t, cmd, "DEV-1\n")
	part := func(name, value string) ([]byte, string) {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		mw.WriteField("ids", "DEV-1")
		mw.WriteField(name, value)
		mw.Close()
		return buf.Bytes(), mw.FormDataContentType()
	}
	unknownPart, unknownCT := part("comand", "x")
	twice, twiceCT := part("ids", "DEV-2")
	noIDs, noIDsCT := func() ([]byte, string) {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		mw.WriteField("command", string(cmd))
		mw.Close()
		return buf.Bytes(), mw.FormDataContentType()
	}()
	blankIDs, blankCT := enqueueForm(t, cmd, "\n \n")
	for _, tc := range []struct {
		name, target, ct string
		body             []byte
		status           int
		want             string
	}{
		{"no ids anywhere", "/v1/enqueue", "", cmd, 400, "multipart/form-data"},
		{"ids in path and form", "/v1/enqueue/DEV-1", goodCT, good, 400, "both the path and a form"},
		{"no boundary", "/v1/enqueue", "multipart/form-data", good, 400, "no boundary"},
		{"truncated", "/v1/enqueue", goodCT, good[:len(good)/2], 400, "bad enqueue form"},
		{"unknown part", "/v1/enqueue", unknownCT, unknownPart, 400, `unknown part "comand"`},
		{"part twice", "/v1/enqueue", twiceCT, twice, 400, `part "ids" sent twice`},
		{"no ids part", "/v1/enqueue", noIDsCT, noIDs, 400, `no "ids" part`},
		{"blank ids", "/v1/enqueue", blankCT, blankIDs, 400, "no ids"},
		{"over the body limit", "/v1/enqueue", goodCT, append(good, bytes.Repeat([]byte(" "), 1<<10)...), 413, "too large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := &recordingEnqueuer{}
			h := http.StripPrefix("/v1/enqueue", api.EnqueueHandler(store, api.WithBodyLimit(int64(len(good)+100))))
			rec := send(h, http.MethodPut, tc.target, tc.ct, tc.body)
			var answer struct{ Error string }
			json.Unmarshal(rec.Body.Bytes(), &answer)
			if rec.Code != tc.status || !strings.Contains(answer.Error, tc.want) {
				t.Errorf("have %d %q, want %d and an error containing %q", rec.Code, answer.Error, tc.status, tc.want)
			}
			if store.called {
				t.Error("storage was called")
			}
		})
	}
}
