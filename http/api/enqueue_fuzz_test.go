package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nanomdm/nanomdm/http/api"
	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/storage"
)

// recordingEnqueuer accepts every enqueue, except that IDs starting with
// "gone" fail one by one and a CommandUUID of "dup" is a duplicate. It
// keeps the last call so the test can see what reached storage.
type recordingEnqueuer struct {
	called bool
	ids    []string
	cmd    *mdm.Command
}

func (r *recordingEnqueuer) EnqueueCommand(_ context.Context, ids []string, cmd *mdm.Command) (map[string]error, error) {
	r.called, r.ids, r.cmd = true, append([]string(nil), ids...), cmd
	if cmd.CommandUUID == "dup" {
		return nil, storage.ErrDuplicateCommand
	}
	errs := map[string]error{}
	for _, id := range ids {
		if strings.HasPrefix(id, "gone") {
			errs[id] = storage.ErrUnknownEnrollment
		}
	}
	return errs, nil
}

// FuzzEnqueueHandler sends arbitrary ID lists and bodies to the enqueue
// handler, as an operator (or whoever stole the API key) could. Whatever
// arrives, nothing panics, the answer is JSON with a documented status, and
// storage only ever sees valid, distinct enrollment IDs (at most the
// configured number) and a command that decoded with a UUID and request
// type, whose raw bytes are exactly the body.
func FuzzEnqueueHandler(f *testing.F) {
	good, err := mdm.NewCommand("fuzz-1", "ProfileList", nil)
	if err != nil {
		f.Fatalf("building seed command: %v", err)
	}
	dupCmd, _ := mdm.NewCommand("dup", "ProfileList", nil)
	raw, dup := []byte(good.Raw), []byte(dupCmd.Raw)
	f.Add("DEV-1", raw, true)
	f.Add("DEV-1,DEV-2,gone-3", raw, true)
	f.Add("DEV-1:USER-1", raw, false)
	f.Add("a/b", raw, true)
	f.Add("..", raw, true)
	f.Add(",,,", raw, true)
	f.Add("DEV-1,DEV-1", dup, true)
	f.Add("DEV-1", []byte{}, false)
	f.Add("DEV-1", []byte{}, true)
	f.Add("DEV-1", []byte("bplist00"), true)
	f.Add("DEV-1", []byte(`<plist><dict><key>CommandUUID</key><string>u</string></dict></plist>`), true)
	f.Add(strings.Repeat("x,", 9), raw, true)
	const maxIDs, bodyLimit = 8, 4 << 10
	f.Fuzz(func(t *testing.T, ids string, body []byte, nopush bool) {
		store := &recordingEnqueuer{}
		h := api.EnqueueHandler(store, api.WithMaxIDs(maxIDs), api.WithBodyLimit(bodyLimit))
		req := httptest.NewRequest(http.MethodPut, "/", bytes.NewReader(body))
		// Set the path directly, as http.StripPrefix leaves it: the
		// fuzzer's string may not survive URL parsing.
		req.URL.Path = ids
		if nopush {
			req.URL.RawQuery = "nopush=1"
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)

		switch rec.Code {
		case 200, 207, 400, 409, 413, 500:
		default:
			t.Fatalf("status %d for ids %q", rec.Code, ids)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Fatalf("content type %q", ct)
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("answer is not JSON: %q", rec.Body.Bytes())
		}
		if len(body) > bodyLimit && rec.Code != http.StatusBadRequest && rec.Code != http.StatusRequestEntityTooLarge {
			t.Fatalf("body of %d bytes over the %d limit: status %d", len(body), bodyLimit, rec.Code)
		}
		if !store.called {
			return
		}
		if rec.Code == http.StatusBadRequest || rec.Code == http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d but storage was called", rec.Code)
		}
		if len(store.ids) == 0 || len(store.ids) > maxIDs {
			t.Fatalf("storage got %d ids, want 1 to %d", len(store.ids), maxIDs)
		}
		seen := map[string]bool{}
		for _, id := range store.ids {
			if err := mdm.ValidateEnrollmentID(id); err != nil {
				t.Fatalf("storage got invalid id %q: %v", id, err)
			}
			if seen[id] {
				t.Fatalf("storage got id %q twice", id)
			}
			seen[id] = true
		}
		if !bytes.Equal(store.cmd.Raw, body) {
			t.Fatal("stored command bytes differ from the body")
		}
		if store.cmd.CommandUUID == "" || store.cmd.Command.RequestType == "" {
			t.Fatalf("storage got a command without UUID or request type: %+v", store.cmd)
		}
		if err := mdm.ValidateIDPart(store.cmd.CommandUUID); err != nil {
			t.Fatalf("storage got unsafe command UUID %q: %v", store.cmd.CommandUUID, err)
		}
		var a api.Response
		if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil {
			t.Fatalf("decoding answer: %v", err)
		}
		if a.CommandUUID != store.cmd.CommandUUID {
			t.Fatalf("answer names command %q, stored %q", a.CommandUUID, store.cmd.CommandUUID)
		}
		if store.cmd.CommandUUID == "dup" && rec.Code != http.StatusConflict {
			t.Fatalf("duplicate command: status %d, want 409", rec.Code)
		}
	})
}

// FuzzEnqueueForm sends arbitrary multipart bodies to the enqueue handler
// without IDs in the path. Whatever arrives, nothing panics, the answer is
// JSON with a documented status, a body over the limit never reaches
// storage, and storage only sees valid, distinct IDs (at most the
// configured number) and a decoded command.
func FuzzEnqueueForm(f *testing.F) {
	good, err := mdm.NewCommand("fuzz-1", "ProfileList", nil)
	if err != nil {
		f.Fatalf("building seed command: %v", err)
	}
	const boundary = "XyZ"
	form := func(parts ...string) []byte {
		var b strings.Builder
		for i := 0; i+1 < len(parts); i += 2 {
			b.WriteString("--" + boundary + "\r\nContent-Disposition: form-data; name=\"" + parts[i] + "\"\r\n\r\n" + parts[i+1] + "\r\n")
		}
		b.WriteString("--" + boundary + "--\r\n")
		return []byte(b.String())
	}
	f.Add(form("command", string(good.Raw), "ids", "DEV-1\nDEV-2\n"), boundary)
	f.Add(form("ids", "DEV-1\r\n\r\ngone-2"), boundary)
	f.Add(form("command", string(good.Raw), "ids", strings.Repeat("x\n", 9)), boundary)
	f.Add(form("command", string(good.Raw), "ids", "a/b"), boundary)
	f.Add(form("command", "bplist00", "ids", "DEV-1"), boundary)
	f.Add(form("ids", "DEV-1", "ids", "DEV-2"), boundary)
	f.Add(form("other", "x"), boundary)
	f.Add([]byte("--XyZ\r\nContent-Disposition: form-data; name=\"ids\"\r\n\r\nDEV"), boundary)
	f.Add(form("ids", "DEV-1"), "")
	const maxIDs, bodyLimit = 8, 4 << 10
	f.Fuzz(func(t *testing.T, body []byte, boundary string) {
		store := &recordingEnqueuer{}
		h := api.EnqueueHandler(store, api.WithMaxIDs(maxIDs), api.WithBodyLimit(bodyLimit))
		req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		req.URL.Path = ""
		req.Header.Set("Content-Type", "multipart/form-data; boundary=\""+strings.ReplaceAll(boundary, `"`, "")+"\"")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)

		switch rec.Code {
		case 200, 207, 400, 409, 413, 500:
		default:
			t.Fatalf("status %d", rec.Code)
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("answer is not JSON: %q", rec.Body.Bytes())
		}
		if !store.called {
			return
		}
		if len(body) > bodyLimit {
			t.Fatalf("body of %d bytes over the %d limit reached storage", len(body), bodyLimit)
		}
		if len(store.ids) == 0 || len(store.ids) > maxIDs {
			t.Fatalf("storage got %d ids, want 1 to %d", len(store.ids), maxIDs)
		}
		seen := map[string]bool{}
		for _, id := range store.ids {
			if err := mdm.ValidateEnrollmentID(id); err != nil {
				t.Fatalf("storage got invalid id %q: %v", id, err)
			}
			if seen[id] {
				t.Fatalf("storage got id %q twice", id)
			}
			seen[id] = true
		}
		if store.cmd.CommandUUID == "" || store.cmd.Command.RequestType == "" {
			t.Fatalf("storage got a command without UUID or request type: %+v", store.cmd)
		}
		if !bytes.Contains(body, store.cmd.Raw) {
			t.Fatal("stored command bytes are not in the body")
		}
	})
}
