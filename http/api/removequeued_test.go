package api_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/nanomdm/nanomdm/http/api"
	"github.com/nanomdm/nanomdm/storage/inmem"
	"github.com/nanomdm/nanomdm/storage/storagetest"
)

func TestRemoveQueuedCommandHandler(t *testing.T) {
	s := inmem.New()
	mux := inspectMux(s)
	dev, other := storagetest.NewDevice(t), storagetest.NewDevice(t)
	dev.Enroll(t, s)
	other.Enroll(t, s)
	first, second := storagetest.NewCommand(t, "ProfileList"), storagetest.NewCommand(t, "SecurityInfo")
	storagetest.Enqueue(t, s, first, dev, other)
	storagetest.Enqueue(t, s, second, dev)
	target := func(id, uuid string) string {
		return "/v1/enrollments/" + url.PathEscape(id) + "/queue/" + url.PathEscape(uuid)
	}

	var resp api.RemoveQueuedCommandResponse
	if code := call(t, mux, http.MethodDelete, target(dev.ID(), first.CommandUUID), &resp); code != http.StatusOK {
		t.Fatalf("removing: status %d, want 200", code)
	}
	if resp.ID != dev.ID() || resp.CommandUUID != first.CommandUUID || !resp.Removed {
		t.Errorf("removing: answer %+v", resp)
	}
	storagetest.WantNext(t, s, dev, false, second)
	storagetest.WantNext(t, s, other, false, first)

	for _, tc := range []struct {
		name, method, target string
		want                 int
	}{
		{"removed already", http.MethodDelete, target(dev.ID(), first.CommandUUID), http.StatusNotFound},
		{"never queued", http.MethodDelete, target(dev.ID(), storagetest.RandomUUID()), http.StatusNotFound},
		{"unknown enrollment", http.MethodDelete, target(storagetest.NewDevice(t).ID(), second.CommandUUID), http.StatusNotFound},
		{"malformed ID", http.MethodDelete, target("bad\x01id", second.CommandUUID), http.StatusBadRequest},
	} {
		if code := call(t, mux, tc.method, tc.target, nil); code != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, code, tc.want)
		}
	}
	storagetest.WantNext(t, s, dev, false, second)
}

// FuzzRemoveQueuedCommandHandler feeds arbitrary path values to the
// handler: it never panics, answers 200, 400 or 404 with JSON, and a 200
// means the command is no longer queued for that enrollment.
func FuzzRemoveQueuedCommandHandler(f *testing.F) {
	s := inmem.New()
	dev := storagetest.NewDevice(f)
	dev.Enroll(f, s)
	h := api.RemoveQueuedCommandHandler(s)
	f.Add(dev.ID(), "queued")
	f.Add(dev.ID(), "")
	f.Add("", "x")
	f.Add("../"+dev.ID(), "queued")
	f.Add(dev.ID()+":user", "queued")
	f.Add("\x00", "\xff")
	f.Fuzz(func(t *testing.T, id, uuid string) {
		cmd := storagetest.NewCommand(t, "ProfileList")
		storagetest.Enqueue(t, s, cmd, dev)
		if uuid == "queued" {
			uuid = cmd.CommandUUID
		}
		req := httptest.NewRequest(http.MethodDelete, "/", nil)
		req.SetPathValue("id", id)
		req.SetPathValue("uuid", uuid)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusNotFound:
		default:
			t.Fatalf("id %q uuid %q: status %d %s", id, uuid, rec.Code, rec.Body)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("id %q uuid %q: Content-Type %q", id, uuid, ct)
		}
		if rec.Code == http.StatusOK {
			if id != dev.ID() || uuid != cmd.CommandUUID {
				t.Fatalf("id %q uuid %q: removed something that was not queued", id, uuid)
			}
			if err := s.RemoveQueuedCommand(t.Context(), id, uuid); err == nil {
				t.Fatalf("id %q uuid %q: still queued after 200", id, uuid)
			}
		} else if err := s.RemoveQueuedCommand(t.Context(), dev.ID(), cmd.CommandUUID); err != nil {
			t.Fatalf("id %q uuid %q: answered %d but the command is gone: %v", id, uuid, rec.Code, err)
		}
	})
}
