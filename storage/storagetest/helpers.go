package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"testing"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/storage"
)

// WantNext fails the test unless the next command for c (with skipNotNow)
// is want, compared by CommandUUID, RequestType and raw bytes; a nil want
// means an empty queue.
func WantNext(t testing.TB, s storage.CommandQueueStore, c *Channel, skipNotNow bool, want *mdm.Command) {
	t.Helper()
	have, err := s.RetrieveNextCommand(c.Request(), skipNotNow)
	if err != nil {
		t.Fatalf("next command for %s (skipNotNow=%v): %v", c, skipNotNow, err)
	}
	switch {
	case have == nil && want == nil:
		return
	case want == nil:
		t.Fatalf("next command for %s (skipNotNow=%v): have %s, want none", c, skipNotNow, have.CommandUUID)
	case have == nil:
		t.Fatalf("next command for %s (skipNotNow=%v): have none, want %s", c, skipNotNow, want.CommandUUID)
	}
	if have.CommandUUID != want.CommandUUID {
		t.Fatalf("next command for %s (skipNotNow=%v): have %s, want %s", c, skipNotNow, have.CommandUUID, want.CommandUUID)
	}
	if have.Command.RequestType != want.Command.RequestType {
		t.Errorf("command %s: have RequestType %q, want %q", want.CommandUUID, have.Command.RequestType, want.Command.RequestType)
	}
	if !bytes.Equal(have.Raw, want.Raw) {
		t.Errorf("command %s: raw bytes differ: have %d bytes %.40q, want %d bytes %.40q",
			want.CommandUUID, len(have.Raw), have.Raw, len(want.Raw), want.Raw)
	}
}

// Enqueue queues cmd for the channels and fails the test on any error.
func Enqueue(t testing.TB, s storage.CommandEnqueuer, cmd *mdm.Command, chans ...*Channel) {
	t.Helper()
	ids := make([]string, len(chans))
	for i, c := range chans {
		ids[i] = c.ID()
	}
	errs, err := s.EnqueueCommand(context.Background(), ids, cmd)
	if err != nil {
		t.Fatalf("enqueue %s to %v: %v", cmd.CommandUUID, ids, err)
	}
	for id, err := range errs {
		if err != nil {
			t.Fatalf("enqueue %s to %s: %v", cmd.CommandUUID, id, err)
		}
	}
}

// StoreReport stores a report of status for commandUUID from c and fails
// the test on error.
func StoreReport(t testing.TB, s storage.CommandQueueStore, c *Channel, status, commandUUID string) {
	t.Helper()
	if err := s.StoreCommandReport(c.Request(), c.Report(t, status, commandUUID)); err != nil {
		t.Fatalf("%s report for %s from %s: %v", status, commandUUID, c, err)
	}
}

// wantReportError fails the test unless a report from c fails with an
// error wrapping want.
func wantReportError(t *testing.T, s storage.CommandQueueStore, c *Channel, status, commandUUID string, want error) {
	t.Helper()
	err := s.StoreCommandReport(c.Request(), c.Report(t, status, commandUUID))
	if !errors.Is(err, want) {
		t.Fatalf("%s report for %s from %s: have error %v, want %v", status, commandUUID, c, err, want)
	}
}

// wantTally fails the test unless the TokenUpdate tally of c is want.
func wantTally(t *testing.T, s storage.TokenUpdateTallyStore, c *Channel, want int) {
	t.Helper()
	have, err := s.RetrieveTokenUpdateTally(context.Background(), c.ID())
	if err != nil {
		t.Fatalf("tally of %s: %v", c, err)
	}
	if have != want {
		t.Fatalf("tally of %s: have %d, want %d", c, have, want)
	}
}

// migrated is one message of RetrieveMigrationCheckins, reduced to what
// the suite compares.
type migrated struct {
	Type string // "Authenticate" or "TokenUpdate"
	ID   string
	Raw  []byte
}

func (m migrated) String() string {
	return fmt.Sprintf("%s %s (%d bytes)", m.Type, m.ID, len(m.Raw))
}

// migration runs RetrieveMigrationCheckins and returns the messages of the
// given enrollment IDs, in the order sent. Other enrollments (from other
// tests sharing a database) are ignored.
func migration(t *testing.T, s storage.MigrationStore, chans ...*Channel) []migrated {
	t.Helper()
	ours := map[string]bool{}
	for _, c := range chans {
		ours[c.ID()] = true
	}
	ch := make(chan any)
	done := make(chan error, 1)
	go func() {
		done <- s.RetrieveMigrationCheckins(context.Background(), ch)
		close(ch)
	}()
	var out []migrated
	for msg := range ch {
		var m migrated
		switch msg := msg.(type) {
		case *mdm.Authenticate:
			m.Type = mdm.MessageAuthenticate
		case *mdm.TokenUpdate:
			m.Type = mdm.MessageTokenUpdate
		default:
			t.Errorf("migration sent %T, want *mdm.Authenticate or *mdm.TokenUpdate", msg)
			continue
		}
		id, err := mdm.EnrollmentOf(msg).Resolve()
		if err != nil {
			t.Errorf("migration sent a %s without a valid channel: %v", m.Type, err)
			continue
		}
		if !ours[id.ID] {
			continue
		}
		m.ID, m.Raw = id.ID, mdm.RawOf(msg)
		out = append(out, m)
	}
	if err := <-done; err != nil {
		t.Fatalf("retrieving migration check-ins: %v", err)
	}
	return out
}

// wantMigration fails the test unless the migration messages have are
// want: same order, types, channels and raw bytes.
func wantMigration(t *testing.T, have, want []migrated) {
	t.Helper()
	if len(have) != len(want) {
		t.Fatalf("migration: have %d messages %v, want %d %v", len(have), have, len(want), want)
	}
	for i := range want {
		if have[i].Type != want[i].Type || have[i].ID != want[i].ID {
			t.Fatalf("migration message %d: have %v, want %v (all: have %v, want %v)", i, have[i], want[i], have, want)
		}
		if !bytes.Equal(have[i].Raw, want[i].Raw) {
			t.Fatalf("migration message %d (%v): raw bytes differ from what was stored:\nhave %q\nwant %q", i, want[i], have[i].Raw, want[i].Raw)
		}
	}
}

// expectedMigration builds the wanted migration output: for each device
// (sorted by ID) its Authenticate and latest TokenUpdate, then the latest
// TokenUpdate of each of its users (sorted by ID).
func expectedMigration(devices map[*Channel]migrationEntry) []migrated {
	devs := make([]*Channel, 0, len(devices))
	for d := range devices {
		devs = append(devs, d)
	}
	sort.Slice(devs, func(i, j int) bool { return devs[i].ID() < devs[j].ID() })
	var out []migrated
	for _, d := range devs {
		e := devices[d]
		out = append(out,
			migrated{mdm.MessageAuthenticate, d.ID(), e.auth},
			migrated{mdm.MessageTokenUpdate, d.ID(), e.tokenUpdate})
		users := append([]migrated(nil), e.users...)
		sort.Slice(users, func(i, j int) bool { return users[i].ID < users[j].ID })
		out = append(out, users...)
	}
	return out
}

// migrationEntry is what one device should contribute to the migration.
type migrationEntry struct {
	auth, tokenUpdate []byte
	users             []migrated
}
