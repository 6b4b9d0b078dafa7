package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"testing"

	"github.com/nanomdm/nanomdm/mdm/simulator"
)

var update = flag.Bool("update", false, "write golden events that do not exist yet (never overwrites)")

// traceIDPattern is the form of the HTTP layer's trace IDs.
var traceIDPattern = regexp.MustCompile(`^[0-9a-f]{16}$`)

// volatile are the event fields that differ on every run.
var volatile = []string{"created_at", "event_id"}

func decodeObject(t *testing.T, what string, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("decoding %s: %v\n%s", what, err, b)
	}
	return m
}

// compareGolden compares event with testdata/webhook/name.json field by
// field, volatile fields excepted. With -update a missing golden file is
// written from event instead.
func compareGolden(t *testing.T, name string, event []byte) {
	t.Helper()
	path := filepath.Join("testdata", "webhook", name+".json")
	want, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && *update {
		m := decodeObject(t, "event", event)
		m["created_at"], m["event_id"] = "0001-01-01T00:00:00Z", "test_event_id"
		out, _ := json.Marshal(m)
		if err := os.WriteFile(path, append(out, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", path)
		return
	}
	if err != nil {
		t.Fatalf("reading golden event: %v (run with -update to create it)", err)
	}
	have, wantM := decodeObject(t, "event", event), decodeObject(t, path, want)
	for _, k := range volatile {
		if _, ok := have[k]; !ok {
			t.Errorf("%s: event has no %q", name, k)
		}
		delete(have, k)
		delete(wantM, k)
	}
	if !reflect.DeepEqual(have, wantM) {
		h, _ := json.MarshalIndent(have, "", "  ")
		w, _ := json.MarshalIndent(wantM, "", "  ")
		t.Errorf("%s: event differs from %s\nhave %s\nwant %s", name, path, h, w)
	}
}

// TestGolden sends the real-device captures through the real MDM handlers
// and compares what the webhook posts with the golden events, and checks
// each against event.schema.json.
func TestGolden(t *testing.T) {
	schema := loadSchema(t, "testdata/webhook/event.schema.json")
	rc := newReceiver(t, nil)
	h := newHarness(t, rc.srv.URL)
	devA, devB := h.device(t, "663b07bb783e9ade1dae4fbb92ea12afc0ce5b69"), h.device(t, "66ADE930-5FDF-5EC4-8429-15640684C489")

	// Each device's captures in the order a device sends them, so that
	// certauth admits them and the tallies are those of a fresh enrollment.
	steps := []struct {
		name    string
		dev     *simulator.Device
		checkin bool
	}{
		{"Authenticate.1", devA, true},
		{"TokenUpdate.1", devA, true},
		{"Authenticate.2", devB, true},
		{"TokenUpdate.2", devB, true},
		{"DeviceInformation.1", devB, false},
	}
	for i, st := range steps {
		raw, err := os.ReadFile(filepath.Join("testdata", "device", st.name+".plist"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.dev.Transport.Send(context.Background(), st.dev.Identity, raw, st.checkin); err != nil {
			t.Fatalf("%s: device answer: %v", st.name, err)
		}
		got := rc.wait(t, i+1)[i]
		t.Run(st.name, func(t *testing.T) {
			compareGolden(t, st.name, got.body)
			for _, err := range schema.validateJSON(got.body) {
				t.Errorf("schema: %v", err)
			}
			ev := decodeObject(t, "event", got.body)
			if id, _ := ev["event_id"].(string); !traceIDPattern.MatchString(id) {
				t.Errorf("event_id = %q, want the request's 16-hex-digit trace ID", id)
			}
		})
	}
}

// TestGoldenFilesValidate checks every golden event against the schema,
// the reference ones and ours alike.
func TestGoldenFilesValidate(t *testing.T) {
	schema := loadSchema(t, "testdata/webhook/event.schema.json")
	files, err := filepath.Glob("testdata/webhook/*.*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden events: %v", err)
	}
	for _, f := range files {
		if filepath.Base(f) == "event.schema.json" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, err := range schema.validateJSON(b) {
			t.Errorf("%s: %v", f, err)
		}
	}
}
