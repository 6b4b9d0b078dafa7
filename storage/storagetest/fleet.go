package storagetest

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/storage"
)

// fleetOf returns the groups of topic, sorted, as have/want text.
func fleetOf(c *storage.FleetCounts, topic string) string {
	var lines []string
	for _, g := range c.Groups {
		if g.Topic == topic {
			lines = append(lines, g.Type+" enabled="+map[bool]string{true: "1", false: "0"}[g.Enabled]+
				" seen="+string(rune('0'+g.Seen))+" n="+string(rune('0'+g.N)))
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "; ")
}

func testFleetCounts(t *testing.T, s storage.AllStorage) {
	ctx := context.Background()
	counter := s
	counts := func(now time.Time) *storage.FleetCounts {
		t.Helper()
		c, err := counter.RetrieveFleetCounts(ctx, now)
		if err != nil {
			t.Fatalf("counting fleet: %v", err)
		}
		return c
	}
	before := counts(time.Now()).Queued

	// Enrollments of a topic of their own: the counts of other subtests
	// sharing the database do not mix in.
	dev, other := NewDevice(t), NewDevice(t)
	other.Topic = dev.Topic
	user := dev.NewUser(t)
	for _, c := range []*Channel{dev, user, other} {
		c.Enroll(t, s)
	}
	if err := s.Disable(other.Request()); err != nil {
		t.Fatalf("disabling %s: %v", other, err)
	}
	if have := fleetOf(counts(time.Now()), NewDevice(t).Topic); have != "" {
		t.Errorf("groups of an unused topic: have %q, want none", have)
	}
	devType, userType := mdm.Device.String(), mdm.User.String()
	for _, tc := range []struct {
		later time.Duration
		seen  string
	}{
		{0, "0"},
		{2 * time.Hour, "1"},
		{2 * 24 * time.Hour, "2"},
		{30 * 24 * time.Hour, "3"},
	} {
		want := devType + " enabled=0 seen=" + tc.seen + " n=1; " + devType + " enabled=1 seen=" + tc.seen + " n=1; " +
			userType + " enabled=1 seen=" + tc.seen + " n=1"
		if have := fleetOf(counts(time.Now().Add(tc.later)), dev.Topic); have != want {
			t.Errorf("groups %v later: have %q, want %q", tc.later, have, want)
		}
	}

	cmd1, cmd2 := NewCommand(t, "ProfileList"), NewCommand(t, "DeviceInformation")
	Enqueue(t, s, cmd1, dev, user)
	Enqueue(t, s, cmd2, dev)
	if have := counts(time.Now()).Queued; have != before+3 {
		t.Errorf("queued after enqueueing 3: have %d, want %d", have, before+3)
	}
	StoreReport(t, s, dev, mdm.StatusNotNow, cmd1.CommandUUID)
	StoreReport(t, s, dev, mdm.StatusAcknowledged, cmd2.CommandUUID)
	if have := counts(time.Now()).Queued; have != before+2 {
		t.Errorf("queued after a NotNow and an Acknowledged: have %d, want %d", have, before+2)
	}
}
