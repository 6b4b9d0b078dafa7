package file

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/storage/storagetest"
)

func records(b []byte) []resultRecord {
	var out []resultRecord
	scanRecords(b, func(r resultRecord) bool { out = append(out, r); return true })
	return out
}

func wantRecords(t *testing.T, what string, have []resultRecord, want ...string) {
	t.Helper()
	var names []string
	for _, r := range have {
		names = append(names, string(r.kind)+r.uuid+"="+string(r.raw))
	}
	if fmt.Sprint(names) != fmt.Sprint(want) {
		t.Errorf("%s: have records %v, want %v", what, names, want)
	}
}

func TestResultRecords(t *testing.T) {
	var log []byte
	log = appendRecord(log, kindFinal, "u1", []byte("one"))
	log = appendRecord(log, kindNotNow, "u2", []byte("two"))
	log = appendRecord(log, kindFinal, "u3", []byte("NMRLthree")) // the magic inside a report
	wantRecords(t, "round trip", records(log), "Fu1=one", "Nu2=two", "Fu3=NMRLthree")

	second := len(appendRecord(nil, kindFinal, "u1", []byte("one")))
	for cut := len(log) - 1; cut > len(log)-10; cut-- {
		wantRecords(t, fmt.Sprintf("torn at %d", cut), records(log[:cut]), "Fu1=one", "Nu2=two")
	}
	// A torn record followed by later appends: the later ones are kept.
	torn := append(append([]byte{}, log[:second+5]...), appendRecord(nil, kindFinal, "u4", []byte("four"))...)
	wantRecords(t, "append after a torn record", records(torn), "Fu1=one", "Fu4=four")

	bad := append([]byte{}, log...)
	bad[second+recordHeader+3] ^= 0xff // a byte of u2's body
	wantRecords(t, "corrupted record", records(bad), "Fu1=one", "Fu3=NMRLthree")
	bad = append([]byte{}, log...)
	bad[second+5] ^= 0x40 // u2's length
	wantRecords(t, "corrupted length", records(bad), "Fu1=one", "Fu3=NMRLthree")
	wantRecords(t, "garbage before", records(append([]byte("NMRL\x00\x00junk"), log...)), "Fu1=one", "Nu2=two", "Fu3=NMRLthree")
}

// FuzzScanRecords feeds arbitrary logs to the scanner: it never panics,
// each record it returns re-encodes to exactly the bytes it came from, and
// records appended after any garbage are found.
func FuzzScanRecords(f *testing.F) {
	f.Add(appendRecord(appendRecord(nil, kindFinal, "a", []byte("x")), kindNotNow, "b", nil))
	f.Add([]byte("NMRL\x00\x00\x00\x02\x00\x00\x00\x00F\x00"))
	f.Add([]byte("NMRLNMRLNMRL"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<16 {
			return
		}
		last := -1
		scanRecords(b, func(r resultRecord) bool {
			if r.off <= last || r.end > len(b) {
				t.Fatalf("record at %d-%d after %d in %d bytes", r.off, r.end, last, len(b))
			}
			last = r.off
			if enc := appendRecord(nil, r.kind, r.uuid, r.raw); !bytes.Equal(enc, b[r.off:r.end]) {
				t.Fatalf("record at %d does not re-encode to its bytes", r.off)
			}
			return true
		})
		tail := appendRecord(nil, kindFinal, "tail", []byte("end"))
		recs := records(append(append([]byte{}, b...), tail...))
		if n := len(recs); n == 0 || recs[n-1].uuid != "tail" || string(recs[n-1].raw) != "end" {
			t.Fatalf("a record appended after the input was not found last")
		}
	})
}

// TestResultLogStore drives reports through the storage: the log holds
// them, the inspection read prefers the final report, and a log past the
// limit is cut to its newest records.
func TestResultLogStore(t *testing.T) {
	s := newStore(t, t.TempDir())
	s.logCompactAt, s.logKeep = 4<<10, 2<<10
	ctx := context.Background()
	dev := storagetest.NewDevice(t)
	dev.Enroll(t, s)
	c, err := s.channel(dev.ID())
	if err != nil {
		t.Fatal(err)
	}
	var uuids []string
	for i := 0; i < 20; i++ {
		cmd := storagetest.NewCommand(t, "ProfileList")
		storagetest.Enqueue(t, s, cmd, dev)
		uuids = append(uuids, cmd.CommandUUID)
		if i == 0 {
			storagetest.StoreReport(t, s, dev, mdm.StatusNotNow, cmd.CommandUUID)
			res, _ := s.RetrieveCommandResults(ctx, cmd.CommandUUID, "", 0, false)
			if len(res) != 1 || res[0].Status != mdm.StatusNotNow {
				t.Fatalf("after NotNow: results %+v", res)
			}
		}
		storagetest.StoreReport(t, s, dev, mdm.StatusAcknowledged, cmd.CommandUUID)
	}
	if cmd, err := s.RetrieveNextCommand(dev.Request(), false); err != nil || cmd != nil {
		t.Fatalf("next command after all were acknowledged: %v, %v", cmd, err)
	}
	fi, err := os.Stat(c.path(resultLogFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > s.logCompactAt {
		t.Errorf("result log of %d bytes, over the %d limit", fi.Size(), s.logCompactAt)
	}
	last, _ := s.RetrieveCommandResults(ctx, uuids[19], "", 0, false)
	if len(last) != 1 || last[0].Status != mdm.StatusAcknowledged {
		t.Errorf("newest result: %+v", last)
	}
	first, _ := s.RetrieveCommandResults(ctx, uuids[0], "", 0, false)
	if len(first) != 0 {
		t.Errorf("oldest result survived compaction: %+v", first)
	}
	entries, _ := os.ReadDir(c.dir)
	for _, e := range entries {
		if e.Name() == legacyResults || e.Name() == legacyNotNow {
			t.Errorf("a %s directory was created", e.Name())
		}
	}
}

// TestResultLogLargeReports appends reports larger than copyRecordUpTo
// (written after their record's head, without a copy) between small
// ones: each is read back whole, and a report that would be all that a
// compaction keeps replaces the log.
func TestResultLogLargeReports(t *testing.T) {
	t.Parallel()
	s := newStore(t, t.TempDir())
	s.logCompactAt, s.logKeep = 1<<20, 512<<10
	dev := storagetest.NewDevice(t)
	dev.Enroll(t, s)
	c, err := s.channel(dev.ID())
	if err != nil {
		t.Fatal(err)
	}
	reports := map[string][]byte{
		"small1": []byte("one"),
		"large":  bytes.Repeat([]byte("L"), copyRecordUpTo+1),
		"small2": []byte("two"),
	}
	for _, uuid := range []string{"small1", "large", "small2"} {
		if err := s.appendResult(c, kindFinal, uuid, reports[uuid]); err != nil {
			t.Fatal(err)
		}
	}
	log, err := os.ReadFile(c.path(resultLogFile))
	if err != nil {
		t.Fatal(err)
	}
	if recs := records(log); len(recs) != 3 || recs[1].uuid != "large" || !bytes.Equal(recs[1].raw, reports["large"]) {
		t.Fatalf("have %d records, want small1, large (whole), small2", len(recs))
	}
	for uuid, raw := range reports {
		if have, err := readResult(c, uuid); err != nil || !bytes.Equal(have, raw) {
			t.Errorf("%s: read %d bytes (%v), want %d", uuid, len(have), err, len(raw))
		}
	}

	// Past the limit with a report bigger than what compaction keeps:
	// the log is that record alone.
	huge := bytes.Repeat([]byte("H"), int(s.logCompactAt))
	if err := s.appendResult(c, kindNotNow, "huge", huge); err != nil {
		t.Fatal(err)
	}
	log, _ = os.ReadFile(c.path(resultLogFile))
	if recs := records(log); len(recs) != 1 || recs[0].uuid != "huge" || recs[0].kind != kindNotNow || !bytes.Equal(recs[0].raw, huge) || recs[0].end != len(log) {
		t.Errorf("after a report past the limit: have %d records in %d bytes, want the huge one alone", len(recs), len(log))
	}
}

// TestQueueTornDoneLine reads a queue file whose last done line is torn:
// the command stays queued.
func TestQueueTornDoneLine(t *testing.T) {
	q, err := parseQueue([]byte(queueHeader + "a\t\"X\"\t0\t0\t1\nb\t\"Y\"\t0\t0\t2\n\ta\n\tb"))
	if err != nil {
		t.Fatal(err)
	}
	if len(q) != 2 || !q[0].done || q[1].done {
		t.Errorf("have %+v, want a done and b pending", q)
	}
}

// TestLegacyLayout opens a directory of format 1, with reports in a file
// each, and wants them readable, done commands off the queue, the rest
// still queued, and the directory marked format 2.
func TestLegacyLayout(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir)
	dev := storagetest.NewDevice(t)
	dev.Enroll(t, s)
	done, notNow, waiting := storagetest.NewCommand(t, "ProfileList"), storagetest.NewCommand(t, "SecurityInfo"), storagetest.NewCommand(t, "DeviceInformation")
	for _, cmd := range []*mdm.Command{done, notNow, waiting} {
		storagetest.Enqueue(t, s, cmd, dev)
	}
	c, _ := s.channel(dev.ID())
	// Rewrite the directory as format 1 left it.
	os.Remove(c.path(resultLogFile))
	q, _ := readQueue(c)
	os.WriteFile(c.path(queueFile), formatQueue(q), fileMode)
	doneRaw := dev.Report(t, mdm.StatusAcknowledged, done.CommandUUID).Raw
	notNowRaw := dev.Report(t, mdm.StatusNotNow, notNow.CommandUUID).Raw
	for path, raw := range map[string][]byte{
		filepath.Join(c.dir, legacyResults, done.CommandUUID):  doneRaw,
		filepath.Join(c.dir, legacyNotNow, notNow.CommandUUID): notNowRaw,
	} {
		os.MkdirAll(filepath.Dir(path), dirMode)
		if err := os.WriteFile(path, raw, fileMode); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, formatFile), []byte(formatVersion1), fileMode)

	s = newStore(t, dir)
	ctx := context.Background()
	for _, tc := range []struct {
		uuid   string
		raw    []byte
		status string
	}{{done.CommandUUID, doneRaw, mdm.StatusAcknowledged}, {notNow.CommandUUID, notNowRaw, mdm.StatusNotNow}} {
		res, err := s.RetrieveCommandResults(ctx, tc.uuid, "", 0, false)
		if err != nil || len(res) != 1 || res[0].Status != tc.status || !bytes.Equal(res[0].Raw, tc.raw) {
			t.Errorf("result of %s after migration: %+v, %v", tc.uuid, res, err)
		}
	}
	queued, err := s.RetrieveQueue(ctx, dev.ID(), "", 0)
	if err != nil || len(queued) != 2 || queued[0].CommandUUID != notNow.CommandUUID || queued[1].CommandUUID != waiting.CommandUUID {
		t.Errorf("queue after migration: %+v, %v", queued, err)
	}
	storagetest.WantNext(t, s, dev, false, notNow)
	for _, d := range []string{legacyResults, legacyNotNow} {
		if _, err := os.Stat(filepath.Join(c.dir, d)); !os.IsNotExist(err) {
			t.Errorf("%s still there after migration: %v", d, err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, formatFile)); string(b) != formatVersion {
		t.Errorf("format after migration: %q", b)
	}
	// Reopening does nothing more and the reports stay.
	s = newStore(t, dir)
	if res, _ := s.RetrieveCommandResults(ctx, done.CommandUUID, "", 0, false); len(res) != 1 {
		t.Errorf("result after reopening: %+v", res)
	}
}
