package mdm

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// addSeeds adds every fixture in testdata to the corpus.
func addSeeds(f *testing.F) {
	f.Helper()
	files, _ := filepath.Glob(filepath.Join("testdata", "*.plist"))
	if len(files) == 0 {
		f.Fatal("no seed fixtures in testdata")
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("bplist00"))
	f.Add(plistDict("MessageType", "Authenticate", "UDID", "U", "Topic", "t"))
}

func FuzzDecodeCheckin(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := DecodeCheckin(data)
		if err != nil {
			return
		}
		if !bytes.Equal(RawOf(msg), data) {
			t.Error("raw bytes not kept")
		}
		if EnrollmentOf(msg) == nil {
			t.Errorf("no enrollment for %T", msg)
		}
		EnrollmentOf(msg).Resolve()
	})
}

func FuzzDecodeCommandResults(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeCommandResults(data)
		if err != nil {
			return
		}
		if r.Status == "" || !bytes.Equal(r.Raw, data) {
			t.Errorf("decoded report without status or raw: %+v", r)
		}
		r.Resolve()
	})
}

func FuzzDecodeCommand(f *testing.F) {
	addSeeds(f)
	if c, err := NewCommand("uuid-1", "ProfileList", nil); err == nil {
		f.Add([]byte(c.Raw))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := DecodeCommand(data)
		if err != nil {
			return
		}
		if c.CommandUUID == "" || c.Command.RequestType == "" {
			t.Errorf("accepted command without uuid or request type: %+v", c)
		}
	})
}
