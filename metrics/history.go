package metrics

import (
	"sync"
	"time"

	"github.com/nanomdm/nanomdm/mdm"
)

// ReportHistoryHours is how many hours of command results Metrics keeps,
// hour by hour, for the console's overview.
const ReportHistoryHours = 24

// ReportHour counts the command results (reports other than Idle) that
// this server received in the hour from Start, by status.
type ReportHour struct {
	Start  time.Time
	Counts map[string]int
}

// reportHistory is a ring of hourly counts, indexed by hour number.
type reportHistory struct {
	mu    sync.Mutex
	hours [ReportHistoryHours]ReportHour
}

// add counts one result of status at now.
func (h *reportHistory) add(status string, now time.Time) {
	if status == mdm.StatusIdle {
		return
	}
	start := now.Truncate(time.Hour)
	h.mu.Lock()
	defer h.mu.Unlock()
	slot := &h.hours[start.Unix()/3600%ReportHistoryHours]
	if !slot.Start.Equal(start) {
		*slot = ReportHour{Start: start, Counts: map[string]int{}}
	}
	slot.Counts[status]++
}

// RecentReports returns the command results of the last
// ReportHistoryHours hours up to now, oldest first, one entry per hour
// (empty hours included). Counts start when the server does.
func (m *Metrics) RecentReports(now time.Time) []ReportHour {
	h := &m.history
	end := now.Truncate(time.Hour)
	out := make([]ReportHour, ReportHistoryHours)
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := range out {
		start := end.Add(-time.Duration(ReportHistoryHours-1-i) * time.Hour)
		out[i] = ReportHour{Start: start, Counts: map[string]int{}}
		if slot := h.hours[start.Unix()/3600%ReportHistoryHours]; slot.Start.Equal(start) {
			for k, v := range slot.Counts {
				out[i].Counts[k] = v
			}
		}
	}
	return out
}
