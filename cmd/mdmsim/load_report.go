package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/nanomdm/nanomdm/mdm/simulator"
)

// phase collects the operations of one phase of a run (over all rounds).
type phase struct {
	name string

	done atomic.Int64 // operations finished, for the progress line
	mu   sync.Mutex
	lat  []time.Duration
	errs map[string]int
	wall time.Duration

	// Resource use measured around the phase, when asked for.
	serverCPU   time.Duration
	serverSys   time.Duration // the kernel's part of serverCPU
	dbCPU       time.Duration // sessions of the database under test, and background work
	dbServerCPU time.Duration // the whole database server
	toolCPU     time.Duration // this process
	hasTool     bool
	hasServer   bool
	hasDB       bool
	hasDBServer bool
}

func newPhase(name string) *phase { return &phase{name: name, errs: map[string]int{}} }

// record adds one operation that took d and failed with err (or not).
func (p *phase) record(d time.Duration, err error) {
	p.mu.Lock()
	p.lat = append(p.lat, d)
	if err != nil {
		p.errs[errorKind(err)]++
	}
	p.mu.Unlock()
	p.done.Add(1)
}

// errorKind names the class of an error for the summary: the status the
// server answered, a timeout, a refused connection, or the error text.
func errorKind(err error) string {
	var se *simulator.ErrStatus
	var ae *apiError
	var ne net.Error
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("status %d", se.Status)
	case errors.As(err, &ae):
		return fmt.Sprintf("api status %d", ae.status)
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case strings.Contains(err.Error(), "connection refused"):
		return "connection refused"
	case strings.Contains(err.Error(), "connection reset"):
		return "connection reset"
	}
	s := err.Error()
	if len(s) > 80 {
		s = s[:80]
	}
	return s
}

// LatencySummary is the latency distribution of a phase, in milliseconds.
type LatencySummary struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// PhaseSummary is one phase in the summary.
type PhaseSummary struct {
	Name      string         `json:"name"`
	Ops       int            `json:"ops"`
	Seconds   float64        `json:"seconds"`
	OpsPerSec float64        `json:"ops_per_sec"`
	LatencyMS LatencySummary `json:"latency_ms"`
	Errors    map[string]int `json:"errors,omitempty"`
	// ServerCPUMS is the CPU time (user and system) of -server-pid during
	// the phase; ServerCPUPerOpMS divides it by the operations.
	ServerCPUMS      *float64 `json:"server_cpu_ms,omitempty"`
	ServerCPUPerOpMS *float64 `json:"server_cpu_per_op_ms,omitempty"`
	// ToolCPUPerOpMS is the CPU time the load tool itself spent per
	// operation (signing requests, building answers), which on a shared
	// machine bounds the throughput it can drive.
	ToolCPUPerOpMS *float64 `json:"tool_cpu_per_op_ms,omitempty"`
	// ServerSystemShare is the share of ServerCPUMS spent in the kernel.
	ServerSystemShare *float64 `json:"server_system_share,omitempty"`
	// DBCPUMS is the CPU time the database spent for the server under
	// test: its sessions plus the database server's background processes
	// or threads (needs -db-dsn).
	DBCPUMS      *float64 `json:"db_cpu_ms,omitempty"`
	DBCPUPerOpMS *float64 `json:"db_cpu_per_op_ms,omitempty"`
	// DBServerCPUMS is the CPU time of the whole database server (every
	// process or thread under -db-pid), other databases' work included.
	DBServerCPUMS      *float64 `json:"db_server_cpu_ms,omitempty"`
	DBServerCPUPerOpMS *float64 `json:"db_server_cpu_per_op_ms,omitempty"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func ptr(f float64) *float64 { return &f }

func (p *phase) summary() PhaseSummary {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := PhaseSummary{Name: p.name, Ops: len(p.lat), Seconds: p.wall.Seconds()}
	if len(p.errs) > 0 {
		s.Errors = map[string]int{}
		for k, v := range p.errs {
			s.Errors[k] = v
		}
	}
	if p.wall > 0 {
		s.OpsPerSec = float64(len(p.lat)) / p.wall.Seconds()
	}
	if len(p.lat) > 0 {
		lat := slices.Clone(p.lat)
		slices.Sort(lat)
		q := func(f float64) float64 { return ms(lat[min(len(lat)-1, int(f*float64(len(lat))))]) }
		s.LatencyMS = LatencySummary{P50: q(0.50), P95: q(0.95), P99: q(0.99), Max: ms(lat[len(lat)-1])}
	}
	if p.hasTool && len(p.lat) > 0 {
		s.ToolCPUPerOpMS = ptr(ms(p.toolCPU) / float64(len(p.lat)))
	}
	if p.hasServer {
		s.ServerCPUMS = ptr(ms(p.serverCPU))
		if p.serverCPU > 0 {
			s.ServerSystemShare = ptr(float64(p.serverSys) / float64(p.serverCPU))
		}
		if len(p.lat) > 0 {
			s.ServerCPUPerOpMS = ptr(ms(p.serverCPU) / float64(len(p.lat)))
		}
	}
	if p.hasDB {
		s.DBCPUMS = ptr(ms(p.dbCPU))
		if len(p.lat) > 0 {
			s.DBCPUPerOpMS = ptr(ms(p.dbCPU) / float64(len(p.lat)))
		}
	}
	if p.hasDBServer {
		s.DBServerCPUMS = ptr(ms(p.dbServerCPU))
		if len(p.lat) > 0 {
			s.DBServerCPUPerOpMS = ptr(ms(p.dbServerCPU) / float64(len(p.lat)))
		}
	}
	return s
}

// CommandSummary is the verification of the command traffic.
type CommandSummary struct {
	// Enqueued counts (channel, command) pairs the API accepted.
	Enqueued int `json:"enqueued"`
	// Delivered counts commands the server sent, NotNow repeats included.
	Delivered int `json:"delivered"`
	// Answered counts final answers (Acknowledged or Error), one per
	// enqueued pair when all is well.
	Answered     int `json:"answered"`
	Acknowledged int `json:"acknowledged"`
	Errors       int `json:"error_answers"`
	NotNow       int `json:"not_now_answers"`
	// Lost: enqueued, never delivered for a final answer.
	Lost int `json:"lost"`
	// Duplicated: delivered again after their final answer.
	Duplicated int `json:"duplicated"`
	// Extra: delivered to a channel they were not enqueued for.
	Extra int `json:"extra"`
	// Misordered: first deliveries out of enqueue order.
	Misordered int `json:"misordered"`
	// Failed: enqueue refusals and commands left unanswered because a
	// device request failed.
	Failed int `json:"failed"`
}

// ServerSummary is what /proc said about the server process.
type ServerSummary struct {
	PID int `json:"pid"`
	// PeakRSSMB is the largest resident set seen while sampling during
	// the run; HighWaterRSSMB is the kernel's peak (VmHWM) since the
	// process started.
	PeakRSSMB      float64 `json:"peak_rss_mb"`
	HighWaterRSSMB float64 `json:"high_water_rss_mb"`
	Threads        int     `json:"threads"`
}

// DBSummary is what the database said about the run.
type DBSummary struct {
	Driver string `json:"driver,omitempty"`
	PID    int    `json:"pid,omitempty"`
	// SessionsOpened counts sessions (connections) opened during the run,
	// not counting the tool's own.
	SessionsOpened *int64 `json:"sessions_opened,omitempty"`
	// SessionsOpenAtEnd counts the database's sessions open at the end,
	// not counting the tool's own.
	SessionsOpenAtEnd *int64 `json:"sessions_open_at_end,omitempty"`
	// Note says what the counts include.
	Note string `json:"note,omitempty"`
}

// Summary is the result of a load run; -json prints it.
type Summary struct {
	Config   map[string]any `json:"config"`
	Minted   int            `json:"identities_minted"`
	Channels int            `json:"channels"`
	Phases   []PhaseSummary `json:"phases"`
	Commands CommandSummary `json:"commands"`
	Server   *ServerSummary `json:"server,omitempty"`
	DB       *DBSummary     `json:"db,omitempty"`
	OK       bool           `json:"ok"`
	Problems []string       `json:"problems,omitempty"`
}

func (s *Summary) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(s)
}

func (s *Summary) writeText(w io.Writer) {
	fmt.Fprintf(w, "%d channels (%d identities minted now)\n\n", s.Channels, s.Minted)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\tops\tsec\tops/s\tp50 ms\tp95 ms\tp99 ms\tmax ms\tsrv cpu ms/op\t(kernel)\tdb cpu ms/op\t(whole db server)\terrors\t")
	for _, p := range s.Phases {
		opt := func(f *float64) string {
			if f == nil {
				return "-"
			}
			return fmt.Sprintf("%.3f", *f)
		}
		var errs []string
		for k, v := range p.Errors {
			errs = append(errs, fmt.Sprintf("%s: %d", k, v))
		}
		sort.Strings(errs)
		e := strings.Join(errs, ", ")
		if e == "" {
			e = "0"
		}
		kernel := "-"
		if p.ServerSystemShare != nil {
			kernel = fmt.Sprintf("%.0f%%", 100**p.ServerSystemShare)
		}
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%s\t%s\t%s\t%s\t%s\t\n",
			p.Name, p.Ops, p.Seconds, p.OpsPerSec, p.LatencyMS.P50, p.LatencyMS.P95, p.LatencyMS.P99, p.LatencyMS.Max,
			opt(p.ServerCPUPerOpMS), kernel, opt(p.DBCPUPerOpMS), opt(p.DBServerCPUPerOpMS), e)
	}
	tw.Flush()
	c := s.Commands
	fmt.Fprintf(w, "\ncommands: %d enqueued, %d delivered, %d answered (%d acknowledged, %d error), %d NotNow\n",
		c.Enqueued, c.Delivered, c.Answered, c.Acknowledged, c.Errors, c.NotNow)
	fmt.Fprintf(w, "verification: %d lost, %d duplicated, %d extra, %d misordered, %d failed\n",
		c.Lost, c.Duplicated, c.Extra, c.Misordered, c.Failed)
	if s.Server != nil {
		fmt.Fprintf(w, "server pid %d: peak RSS %.1f MB sampled, %.1f MB high-water since start, %d threads\n",
			s.Server.PID, s.Server.PeakRSSMB, s.Server.HighWaterRSSMB, s.Server.Threads)
	}
	if s.DB != nil {
		fmt.Fprintf(w, "database (%s", s.DB.Driver)
		if s.DB.PID != 0 {
			fmt.Fprintf(w, ", pid %d", s.DB.PID)
		}
		fmt.Fprint(w, "):")
		if s.DB.SessionsOpened != nil {
			fmt.Fprintf(w, " %d sessions opened", *s.DB.SessionsOpened)
		}
		if s.DB.SessionsOpenAtEnd != nil {
			fmt.Fprintf(w, ", %d open at the end", *s.DB.SessionsOpenAtEnd)
		}
		if s.DB.Note != "" {
			fmt.Fprintf(w, " (%s)", s.DB.Note)
		}
		fmt.Fprintln(w)
	}
	if s.OK {
		fmt.Fprintln(w, "OK")
		return
	}
	for _, p := range s.Problems {
		fmt.Fprintln(w, "FAIL:", p)
	}
}

// progress rewrites one status line on a terminal while a phase runs.
type progress struct {
	w     io.Writer
	stop  chan struct{}
	done  chan struct{}
	label string
	p     *phase
	from  int64 // operations of the phase before this part
	start time.Time
}

func startProgress(w io.Writer, label string, p *phase) *progress {
	pr := &progress{w: w, stop: make(chan struct{}), done: make(chan struct{}), label: label, p: p,
		from: p.done.Load(), start: time.Now()}
	if w == nil {
		close(pr.done)
		return pr
	}
	go func() {
		defer close(pr.done)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-pr.stop:
				fmt.Fprint(pr.w, "\r\033[K")
				return
			case <-tick.C:
				pr.print()
			}
		}
	}()
	return pr
}

func (pr *progress) print() {
	n := pr.p.done.Load() - pr.from
	el := time.Since(pr.start).Seconds()
	pr.p.mu.Lock()
	errs := 0
	for _, v := range pr.p.errs {
		errs += v
	}
	pr.p.mu.Unlock()
	fmt.Fprintf(pr.w, "\r\033[K%s: %d requests, %.0f/s, %d errors so far, %.0fs", pr.label, n, float64(n)/max(el, 0.001), errs, el)
}

func (pr *progress) end() {
	if pr.w != nil {
		close(pr.stop)
	}
	<-pr.done
}

// isTerminal reports whether f is a terminal, where a progress line that
// rewrites itself makes sense.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
