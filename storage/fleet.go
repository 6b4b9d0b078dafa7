package storage

import (
	"context"
	"time"
)

// LastSeenWindows are the windows FleetCounter sorts enrollments into by
// last seen: within an hour, a day, a week of now; the rest are older.
// The SQL backends' queries are written for exactly three windows.
var LastSeenWindows = [3]time.Duration{time.Hour, 24 * time.Hour, 7 * 24 * time.Hour}

// SeenWindow returns the index of the first of LastSeenWindows that
// lastSeen falls in (strictly after now minus the window), or
// len(LastSeenWindows) when it is older than all of them.
func SeenWindow(now, lastSeen time.Time) int {
	for i, w := range LastSeenWindows {
		if lastSeen.After(now.Add(-w)) {
			return i
		}
	}
	return len(LastSeenWindows)
}

// FleetGroup counts the enrollments that share a push topic, a channel
// type, an enabled state and a last-seen window.
type FleetGroup struct {
	Topic   string
	Type    string
	Enabled bool
	// Seen is the last-seen window, as SeenWindow numbers it.
	Seen int
	N    int
}

// FleetCounts is the whole fleet at a glance.
type FleetCounts struct {
	// Groups holds one entry per non-empty group, in no set order.
	Groups []FleetGroup
	// Queued counts outstanding commands (not yet answered, or answered
	// NotNow) over every queue: a command queued for three enrollments
	// counts three.
	Queued int
}

// Add counts one enrollment, for backends that count in Go.
func (c *FleetCounts) Add(topic, typ string, enabled bool, seen int) {
	for i := range c.Groups {
		g := &c.Groups[i]
		if g.Topic == topic && g.Type == typ && g.Enabled == enabled && g.Seen == seen {
			g.N++
			return
		}
	}
	c.Groups = append(c.Groups, FleetGroup{Topic: topic, Type: typ, Enabled: enabled, Seen: seen, N: 1})
}

// FleetCounter counts the fleet for the operators' overview.
type FleetCounter interface {
	// RetrieveFleetCounts counts every enrollment (a channel that has
	// sent a TokenUpdate) by topic, type, enabled state and last-seen
	// window relative to now, and the outstanding commands of every
	// queue. An empty store gives no groups and no queued commands.
	RetrieveFleetCounts(ctx context.Context, now time.Time) (*FleetCounts, error)
}
