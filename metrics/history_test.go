package metrics

import (
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/mdm"
)

func TestRecentReports(t *testing.T) {
	m := New("test")
	now := time.Date(2026, 12, 5, 9, 30, 0, 0, time.UTC)
	m.history.add(mdm.StatusAcknowledged, now)
	m.history.add(mdm.StatusAcknowledged, now.Add(-10*time.Minute))
	m.history.add(mdm.StatusIdle, now) // not a command result
	m.history.add(mdm.StatusError, now.Add(-2*time.Hour))
	m.history.add(mdm.StatusNotNow, now.Add(-30*time.Hour)) // older than the window

	hours := m.RecentReports(now)
	if len(hours) != ReportHistoryHours {
		t.Fatalf("have %d hours, want %d", len(hours), ReportHistoryHours)
	}
	last, twoAgo := hours[len(hours)-1], hours[len(hours)-3]
	if !last.Start.Equal(now.Truncate(time.Hour)) || !hours[0].Start.Equal(now.Truncate(time.Hour).Add(-23*time.Hour)) {
		t.Errorf("hours from %v to %v, want the 24 up to %v", hours[0].Start, last.Start, now.Truncate(time.Hour))
	}
	if last.Counts[mdm.StatusAcknowledged] != 2 || last.Counts[mdm.StatusIdle] != 0 || twoAgo.Counts[mdm.StatusError] != 1 {
		t.Errorf("have this hour %v and two hours ago %v; want 2 Acknowledged, no Idle, 1 Error", last.Counts, twoAgo.Counts)
	}
	total := 0
	for _, h := range hours {
		total += h.Counts[mdm.StatusNotNow]
	}
	if total != 0 {
		t.Errorf("a NotNow of 30 hours ago is counted %d times, want 0", total)
	}

	// A day later the slots are reused: nothing of the day before shows.
	for _, h := range m.RecentReports(now.Add(24 * time.Hour)) {
		if len(h.Counts) != 0 {
			t.Errorf("a day later, hour %v has %v, want nothing", h.Start, h.Counts)
		}
	}
}
