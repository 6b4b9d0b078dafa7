package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/log"
	"github.com/nanomdm/nanomdm/mdm"
)

// FuzzEvent feeds arbitrary device bytes through the same decoding the
// HTTP layer does and, for whatever decodes, builds and encodes the event.
// The event must encode, validate against the schema and carry the bytes
// unchanged, whatever the device sent (binary plists, odd strings, ...).
func FuzzEvent(f *testing.F) {
	schema := loadSchema(f, "testdata/webhook/event.schema.json")
	files, _ := filepath.Glob("testdata/device/*.plist")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, true)
		f.Add(b, false)
	}
	f.Add([]byte("bplist00\xd1\x01\x02VStatusTIdle\x08\x0b\x12\x00\x00\x00\x00\x00\x00\x01\x01\x00\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x17"), false)
	f.Fuzz(func(t *testing.T, raw []byte, checkin bool) {
		var msg any
		var err error
		if checkin {
			msg, err = mdm.DecodeCheckin(raw)
		} else {
			msg, err = mdm.DecodeCommandResults(raw)
		}
		if err != nil {
			return
		}
		e := mdm.EnrollmentOf(msg)
		id, err := e.Resolve()
		if err != nil {
			return
		}
		r := &mdm.Request{Context: log.WithTraceID(context.Background(), "0123456789abcdef"), EnrollID: id}
		var ev *Event
		if res, ok := msg.(*mdm.CommandResults); ok {
			ev = newAcknowledgeEvent(r, res, time.Now().UTC())
		} else {
			one := 1
			ev = newCheckinEvent(r, "mdm.Authenticate", e, mdm.RawOf(msg), &one, time.Now().UTC())
		}
		body, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("encoding event: %v", err)
		}
		for _, err := range schema.validateJSON(body) {
			t.Errorf("schema: %v", err)
		}
		var back Event
		if err := json.Unmarshal(body, &back); err != nil {
			t.Fatalf("decoding our own event: %v", err)
		}
		var gotRaw []byte
		if back.AcknowledgeEvent != nil {
			gotRaw = back.AcknowledgeEvent.RawPayload
		} else if back.CheckinEvent != nil {
			gotRaw = back.CheckinEvent.RawPayload
		}
		if !bytes.Equal(gotRaw, raw) {
			t.Errorf("raw_payload changed in transit")
		}
	})
}
