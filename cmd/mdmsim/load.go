package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/mdm/simulator"
)

// loadConfig is every flag of mdmsim load.
type loadConfig struct {
	url        string
	mdmPath    string
	apiKey     string
	caCert     string
	caKey      string
	enrollURL  string
	fleetPath  string
	keyType    string
	signature  string
	certHeader string
	devices    int
	userShare  float64
	workers    int
	rounds     int
	commands   int
	batch      int
	notNow     float64
	errShare   float64
	enroll     bool
	jsonOut    bool
	serverPID  int
	dbPID      int
	dbDriver   string
	dbDSN      string
	timeout    time.Duration
}

// defaultFleetPath is nanomdm/fleet.json in the user's cache directory,
// or in the temporary directory when there is none: not the working
// directory, which is often a checkout.
func defaultFleetPath() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "nanomdm", "fleet.json")
}

func parseLoadFlags(args []string, stderr io.Writer) (*loadConfig, error) {
	c := &loadConfig{}
	fs := flag.NewFlagSet("mdmsim load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.url, "url", "http://localhost:9000", "base URL of the server")
	fs.StringVar(&c.mdmPath, "mdm-path", "/mdm", "path of the MDM endpoint under -url")
	fs.StringVar(&c.apiKey, "api-key", "", "the server's API key (-api), for enqueueing commands")
	fs.StringVar(&c.caCert, "ca-cert", "dev/ca.pem", "PEM certificate of the CA the server trusts (-ca)")
	fs.StringVar(&c.caKey, "ca-key", "dev/ca.key", "PEM private key of that CA")
	fs.StringVar(&c.enrollURL, "enroll-url", "", "get new identities as devices do: fetch this enrollment profile (the server's /mdm/enroll, with ?token= if needed) and run SCEP with its challenge, instead of -ca-cert/-ca-key (needs -key-type rsa)")
	fs.StringVar(&c.fleetPath, "fleet", defaultFleetPath(), "file keeping the minted identities, reused by later runs (default: in the user's cache directory, else the temporary directory)")
	fs.StringVar(&c.keyType, "key-type", "rsa", "identity keys: rsa (2048-bit, as SCEP issues; a few shared by the fleet) or ecdsa (P-256, one per device)")
	fs.StringVar(&c.signature, "signature", "sha1", "Mdm-Signature form: sha1 (as devices sign, no signed attributes) or sha256 (with attributes)")
	fs.StringVar(&c.certHeader, "cert-header", "", "send the identity in this header (RFC 9440) instead of Mdm-Signature, as a TLS proxy would")
	fs.IntVar(&c.devices, "devices", 500, "number of devices")
	fs.Float64Var(&c.userShare, "user-channels", 0, "share of devices (0 to 1) that also have a user channel")
	fs.IntVar(&c.workers, "workers", 8, "concurrent devices (and concurrent enqueue calls)")
	fs.IntVar(&c.rounds, "rounds", 3, "rounds of enqueue then drain")
	fs.IntVar(&c.commands, "commands", 2, "commands per channel per round")
	fs.IntVar(&c.batch, "batch", 100, "enrollment IDs per enqueue call (each call is a new command)")
	fs.Float64Var(&c.notNow, "notnow", 0, "share of commands (0 to 1) answered NotNow before their final answer")
	fs.Float64Var(&c.errShare, "error", 0, "share of commands (0 to 1) answered Error instead of Acknowledged")
	fs.BoolVar(&c.enroll, "enroll", true, "enroll the fleet (Authenticate, TokenUpdate) before the rounds")
	fs.BoolVar(&c.jsonOut, "json", false, "print the summary as JSON")
	fs.IntVar(&c.serverPID, "server-pid", 0, "PID of the server on this machine: report its CPU time per request and its peak RSS")
	fs.IntVar(&c.dbPID, "db-pid", 0, "PID of the database server (postmaster or mariadbd) for its CPU time; found from -db-dsn when it runs here")
	fs.StringVar(&c.dbDriver, "db-driver", "", "pgsql or mysql: with -db-dsn, report database sessions opened (and CPU)")
	fs.StringVar(&c.dbDSN, "db-dsn", "", "DSN of the server's database, in the form of -db-driver's storage backend")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "timeout of each request")
	if err := fs.Parse(args[1:]); err != nil {
		return nil, err
	}
	switch {
	case fs.NArg() > 0:
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	case c.devices < 1 || c.workers < 1 || c.batch < 1 || c.rounds < 0 || c.commands < 0:
		return nil, errors.New("-devices, -workers and -batch must be positive; -rounds and -commands not negative")
	case c.userShare < 0 || c.userShare > 1 || c.notNow < 0 || c.notNow > 1 || c.errShare < 0 || c.errShare > 1:
		return nil, errors.New("-user-channels, -notnow and -error are shares from 0 to 1")
	case c.keyType != "rsa" && c.keyType != "ecdsa":
		return nil, fmt.Errorf("-key-type %q: want rsa or ecdsa", c.keyType)
	case c.signature != "sha1" && c.signature != "sha256":
		return nil, fmt.Errorf("-signature %q: want sha1 or sha256", c.signature)
	case c.rounds > 0 && c.commands > 0 && c.apiKey == "":
		return nil, errors.New("-api-key is required to enqueue commands (or use -rounds 0)")
	case (c.dbDriver == "") != (c.dbDSN == ""):
		return nil, errors.New("-db-driver and -db-dsn go together")
	}
	c.url = strings.TrimSuffix(c.url, "/")
	return c, nil
}

func (c *loadConfig) asMap() map[string]any {
	return map[string]any{
		"url": c.url, "devices": c.devices, "user_channels": c.userShare, "workers": c.workers,
		"rounds": c.rounds, "commands": c.commands, "batch": c.batch, "notnow": c.notNow,
		"error": c.errShare, "key_type": c.keyType, "signature": c.signature, "cert_header": c.certHeader,
		"enroll": c.enroll,
	}
}

// channel is one MDM channel of the fleet and what happened to the
// commands enqueued for it in the current round.
type channel struct {
	ch       *simulator.Channel
	id       string
	enrolled bool

	expected map[string]int // CommandUUID -> its place in enqueue order
	final    map[string]bool
	results  channelResult
}

// channelResult counts what one channel saw in a round.
type channelResult struct {
	delivered, acknowledged, errors, notNow     int
	lost, duplicated, extra, misordered, failed int
}

func (r *channelResult) add(o channelResult) {
	r.delivered += o.delivered
	r.acknowledged += o.acknowledged
	r.errors += o.errors
	r.notNow += o.notNow
	r.lost += o.lost
	r.duplicated += o.duplicated
	r.extra += o.extra
	r.misordered += o.misordered
	r.failed += o.failed
}

// loadRun is one run of the load tool.
type loadRun struct {
	cfg      *loadConfig
	client   *http.Client
	channels []*channel
	progress io.Writer // nil when stderr is no terminal

	enrollPhase, enqueuePhase, drainPhase *phase
	serverCPU                             func() (cpu, system time.Duration, err error)
	dbCPU                                 func() (time.Duration, error) // the whole database server
	probe                                 *dbProbe

	mu       sync.Mutex // guards enqueued and failed during enqueue
	enqueued int
	failed   int
}

// apiError is an enqueue call the API answered with an unexpected status.
type apiError struct {
	status int
	body   string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("enqueue answered %d: %s", e.status, strings.TrimSpace(e.body))
}

// issuer returns the CA of the fleet's identities and how new ones are
// made: by the CA of -ca-cert/-ca-key, or with -enroll-url by the SCEP
// server of the enrollment profile (whose CA the fleet then records).
func (cfg *loadConfig) issuer(ctx context.Context) (*simulator.CA, issuer, error) {
	if cfg.enrollURL != "" {
		if cfg.keyType != "rsa" {
			return nil, nil, errors.New("-enroll-url needs -key-type rsa: SCEP identities have RSA keys")
		}
		client := &http.Client{Timeout: cfg.timeout}
		p, err := simulator.FetchProfile(ctx, client, cfg.enrollURL)
		if err != nil {
			return nil, nil, err
		}
		if p.SCEPURL == "" {
			return nil, nil, errors.New("-enroll-url: the profile has no SCEP payload")
		}
		caCert, err := (&simulator.SCEPClient{URL: p.SCEPURL, Client: client}).CACert(ctx)
		if err != nil {
			return nil, nil, err
		}
		return &simulator.CA{Cert: caCert}, profileIssuer(client, cfg.enrollURL), nil
	}
	certPEM, err := os.ReadFile(cfg.caCert)
	if err != nil {
		return nil, nil, fmt.Errorf("reading CA: %w", err)
	}
	keyPEM, err := os.ReadFile(cfg.caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("reading CA key: %w", err)
	}
	ca, err := simulator.LoadCA(certPEM, keyPEM)
	if err != nil {
		return nil, nil, err
	}
	return ca, caIssuer(ca), nil
}

// runLoad plays a fleet against a running server: enroll, then rounds of
// enqueueing commands through the API and letting every device answer
// them, checking that each command arrives and is answered exactly once.
func runLoad(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseLoadFlags(args, stderr)
	if err != nil {
		return err
	}
	ca, iss, err := cfg.issuer(ctx)
	if err != nil {
		return err
	}
	mintStart := time.Now()
	fl, err := loadFleet(ctx, cfg.fleetPath, ca, iss, cfg.keyType, cfg.devices, max(cfg.workers, 2))
	if err != nil {
		return err
	}
	if fl.minted > 0 && !cfg.jsonOut {
		fmt.Fprintf(stderr, "minted %d identities in %v, kept in %s\n", fl.minted, time.Since(mintStart).Round(time.Millisecond), cfg.fleetPath)
	}

	r := newLoadRun(cfg, fl, stderr)
	summary := &Summary{Config: cfg.asMap(), Minted: fl.minted, Channels: len(r.channels)}
	err = r.attachMeters(ctx, stderr)
	if r.probe != nil {
		defer r.probe.Close()
	}
	if err != nil {
		return err
	}
	var rss *rssSampler
	if cfg.serverPID != 0 {
		rss = startRSSSampler(cfg.serverPID, 100*time.Millisecond)
	}
	var sessionsBefore int64
	if r.probe != nil {
		if sessionsBefore, _, err = r.probe.sessions(ctx); err != nil {
			return err
		}
	}

	if cfg.enroll {
		r.measure(r.enrollPhase, "enroll", func() { r.enrollAll(ctx) })
		summary.Phases = append(summary.Phases, r.enrollPhase.summary())
	}
	var total channelResult
	for round := 0; round < cfg.rounds && cfg.commands > 0 && ctx.Err() == nil; round++ {
		for _, c := range r.channels {
			c.expected, c.final, c.results = map[string]int{}, map[string]bool{}, channelResult{}
		}
		label := fmt.Sprintf("round %d/%d", round+1, cfg.rounds)
		r.measure(r.enqueuePhase, label+" enqueue", func() { r.enqueueRound(ctx, round) })
		r.measure(r.drainPhase, label+" command loop", func() { r.drainRound(ctx) })
		for _, c := range r.channels {
			total.add(c.results)
		}
	}
	if cfg.rounds > 0 && cfg.commands > 0 {
		summary.Phases = append(summary.Phases, r.enqueuePhase.summary(), r.drainPhase.summary())
	}

	if rss != nil {
		peak := rss.end()
		_, hwm, threads, err := procMemory(cfg.serverPID)
		if err != nil {
			return fmt.Errorf("-server-pid %d: %w", cfg.serverPID, err)
		}
		summary.Server = &ServerSummary{PID: cfg.serverPID, PeakRSSMB: float64(peak) / (1 << 20),
			HighWaterRSSMB: float64(hwm) / (1 << 20), Threads: threads}
	}
	if r.probe != nil || cfg.dbPID != 0 {
		summary.DB = &DBSummary{Driver: cfg.dbDriver, PID: cfg.dbPID}
	}
	if probe := r.probe; probe != nil {
		// PostgreSQL counts a session when its backend next reports
		// statistics, at most a second after it started.
		select {
		case <-time.After(1500 * time.Millisecond):
		case <-ctx.Done():
		}
		after, open, err := probe.sessions(context.WithoutCancel(ctx))
		if err != nil {
			return err
		}
		opened := after - sessionsBefore
		summary.DB.SessionsOpened, summary.DB.SessionsOpenAtEnd, summary.DB.Note = &opened, &open, probe.sessionsNote()
	}

	summary.Commands = CommandSummary{
		Enqueued: r.enqueued, Delivered: total.delivered, Answered: total.acknowledged + total.errors,
		Acknowledged: total.acknowledged, Errors: total.errors, NotNow: total.notNow,
		Lost: total.lost, Duplicated: total.duplicated, Extra: total.extra, Misordered: total.misordered,
		Failed: total.failed + r.failed,
	}
	summary.Problems = problems(summary, ctx.Err())
	summary.OK = len(summary.Problems) == 0
	if cfg.jsonOut {
		if err := summary.writeJSON(stdout); err != nil {
			return err
		}
	} else {
		summary.writeText(stdout)
	}
	if !summary.OK {
		return fmt.Errorf("load run failed: %s", strings.Join(summary.Problems, "; "))
	}
	return nil
}

// newLoadRun builds the run's HTTP client and the channels of the first
// -devices devices of the fleet, with user channels for the first share
// of them.
func newLoadRun(cfg *loadConfig, fl *fleet, stderr io.Writer) *loadRun {
	r := &loadRun{
		cfg: cfg,
		client: &http.Client{
			Timeout: cfg.timeout,
			Transport: &http.Transport{
				Proxy:               http.ProxyFromEnvironment,
				MaxIdleConns:        4 * cfg.workers,
				MaxIdleConnsPerHost: 4 * cfg.workers,
				IdleConnTimeout:     90 * time.Second,
			},
		},
		enrollPhase:  newPhase("enroll"),
		enqueuePhase: newPhase("enqueue"),
		drainPhase:   newPhase("command loop"),
	}
	if f, ok := stderr.(*os.File); ok && isTerminal(f) && !cfg.jsonOut {
		r.progress = stderr
	}
	transport := &simulator.Transport{
		URL:           cfg.url + cfg.mdmPath,
		Client:        r.client,
		CertHeader:    cfg.certHeader,
		SHA1Signature: cfg.signature == "sha1",
		UserAgent:     "MDM/1.0 mdmsim-load",
	}
	users := int(float64(cfg.devices)*cfg.userShare + 0.5)
	for i, d := range fl.file.Devices[:cfg.devices] {
		dev := simulator.NewDeviceWithUDID(transport, fl.identities[i], d.UDID)
		dev.Serial = d.Serial
		r.channels = append(r.channels, &channel{ch: dev.Channel, id: dev.Channel.ID(), enrolled: !cfg.enroll})
		if i < users {
			u := dev.User(d.UserID, "user"+d.Serial)
			r.channels = append(r.channels, &channel{ch: u, id: u.ID(), enrolled: !cfg.enroll})
		}
	}
	return r
}

// attachMeters sets up what -server-pid, -db-pid, -db-driver and -db-dsn
// ask to measure. A database that does not run on this machine still
// reports its sessions, but not its CPU time.
func (r *loadRun) attachMeters(ctx context.Context, stderr io.Writer) error {
	cfg := r.cfg
	if cfg.dbDriver != "" {
		probe, err := openDBProbe(ctx, cfg.dbDriver, cfg.dbDSN)
		if err != nil {
			return err
		}
		r.probe = probe
		if cfg.dbPID == 0 {
			cfg.dbPID = probe.serverPID(ctx)
		}
		probe.pid = cfg.dbPID
		if probe.pid == 0 {
			fmt.Fprintln(stderr, "database server not found on this machine: reporting its sessions, not its CPU time")
		} else if _, err := probe.sample(ctx); err != nil {
			return fmt.Errorf("reading database CPU: %w", err)
		}
	}
	if cfg.serverPID != 0 {
		if _, _, err := processCPU(cfg.serverPID); err != nil {
			return fmt.Errorf("-server-pid %d: %w", cfg.serverPID, err)
		}
		pid := cfg.serverPID
		r.serverCPU = func() (time.Duration, time.Duration, error) { return processCPU(pid) }
	}
	if cfg.dbPID != 0 {
		if _, err := treeCPU(cfg.dbPID); err != nil {
			return fmt.Errorf("-db-pid %d: %w", cfg.dbPID, err)
		}
		pid := cfg.dbPID
		r.dbCPU = func() (time.Duration, error) { return treeCPU(pid) }
	}
	return nil
}

// problems lists what makes a run fail.
func problems(s *Summary, ctxErr error) []string {
	var out []string
	if ctxErr != nil {
		out = append(out, "interrupted: "+ctxErr.Error())
	}
	c := s.Commands
	for _, p := range []struct {
		n    int
		what string
	}{
		{c.Lost, "lost"}, {c.Duplicated, "duplicated"}, {c.Extra, "delivered to the wrong channel"},
		{c.Misordered, "delivered out of order"}, {c.Failed, "failed"},
	} {
		if p.n > 0 {
			out = append(out, fmt.Sprintf("%d commands %s", p.n, p.what))
		}
	}
	for _, ph := range s.Phases {
		n := 0
		for _, v := range ph.Errors {
			n += v
		}
		if n > 0 {
			out = append(out, fmt.Sprintf("%d %s requests failed", n, ph.Name))
		}
	}
	return out
}

// measure runs f as part of phase p and adds its wall time and the CPU
// time the server and the database used meanwhile; label names it on the
// progress line.
func (r *loadRun) measure(p *phase, label string, f func()) {
	var srv0, sys0, db0 time.Duration
	var srvErr, dbErr, sampleErr error
	self0, _, selfErr := processCPU(os.Getpid())
	var sample0 cpuSample
	ctx := context.Background()
	sampling := r.probe != nil && r.probe.pid != 0
	if sampling {
		sample0, sampleErr = r.probe.sample(ctx)
	}
	if r.serverCPU != nil {
		srv0, sys0, srvErr = r.serverCPU()
	}
	if r.dbCPU != nil {
		db0, dbErr = r.dbCPU()
	}
	pr := startProgress(r.progress, label, p)
	start := time.Now()
	f()
	p.wall += time.Since(start)
	pr.end()
	if r.serverCPU != nil && srvErr == nil {
		if srv1, sys1, err := r.serverCPU(); err == nil {
			p.serverCPU += srv1 - srv0
			p.serverSys += sys1 - sys0
			p.hasServer = true
		}
	}
	if selfErr == nil {
		if self1, _, err := processCPU(os.Getpid()); err == nil {
			p.toolCPU += self1 - self0
			p.hasTool = true
		}
	}
	if r.dbCPU != nil && dbErr == nil {
		if db1, err := r.dbCPU(); err == nil {
			p.dbServerCPU += db1 - db0
			p.hasDBServer = true
		}
	}
	if sampling && sampleErr == nil {
		if sample1, err := r.probe.sample(ctx); err == nil {
			p.dbCPU += sample1.since(sample0)
			p.hasDB = true
		}
	}
}

// forEach runs f for 0..n-1 on the configured number of workers.
func (r *loadRun) forEach(ctx context.Context, n int, f func(i int)) {
	work := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < r.cfg.workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				f(i)
			}
		}()
	}
	for i := 0; i < n && ctx.Err() == nil; i++ {
		select {
		case work <- i:
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
}

// timed sends one device request and records it in p.
func timed[T any](p *phase, f func() (T, error)) (T, error) {
	start := time.Now()
	v, err := f()
	p.record(time.Since(start), err)
	return v, err
}

// enrollAll sends Authenticate and TokenUpdate for every device channel,
// and TokenUpdate for every user channel after its device's.
func (r *loadRun) enrollAll(ctx context.Context) {
	// Channels of one device are adjacent: the device channel first.
	var groups [][]*channel
	for _, c := range r.channels {
		if c.ch.Enrollment.UserID == "" {
			groups = append(groups, nil)
		}
		groups[len(groups)-1] = append(groups[len(groups)-1], c)
	}
	r.forEach(ctx, len(groups), func(i int) {
		dev := groups[i][0].ch.Device
		if _, err := timed(r.enrollPhase, func() (any, error) { return nil, dev.Authenticate(ctx) }); err != nil {
			return
		}
		for _, c := range groups[i] {
			if _, err := timed(r.enrollPhase, func() (any, error) { return nil, c.ch.TokenUpdate(ctx) }); err != nil {
				return
			}
			c.enrolled = true
		}
	})
}

// deviceInformationQueries are the queries of the DeviceInformation
// commands the tool enqueues, a typical inventory request.
var deviceInformationQueries = []any{
	"UDID", "DeviceName", "OSVersion", "BuildVersion", "ModelName", "Model", "ProductName",
	"SerialNumber", "DeviceCapacity", "AvailableDeviceCapacity", "BatteryLevel", "IMEI", "MEID",
	"IsSupervised", "IsDeviceLocatorServiceEnabled", "IsActivationLockEnabled", "IsCloudBackupEnabled",
	"WiFiMAC", "BluetoothMAC", "OSUpdateSettings", "ServiceSubscriptions", "MDMOptions",
}

func newLoadCommand(requestType string) (*mdm.Command, error) {
	var extra map[string]any
	if requestType == "DeviceInformation" {
		extra = map[string]any{"Queries": deviceInformationQueries}
	}
	return mdm.NewCommand(simulator.NewUDID(), requestType, extra)
}

// enqueueRound enqueues the round's commands: for each of the -commands
// commands, one call per batch of enrolled channels, each call a command
// of its own. The calls of one command run concurrently; the next command
// starts when they are done, so each channel's commands have a known
// order.
func (r *loadRun) enqueueRound(ctx context.Context, round int) {
	var ids []*channel
	for _, c := range r.channels {
		if c.enrolled {
			ids = append(ids, c)
		} else {
			r.failed += r.cfg.commands // never enrolled: nothing can reach it
		}
	}
	types := simulator.RealisticRequestTypes
	for k := 0; k < r.cfg.commands && ctx.Err() == nil; k++ {
		requestType := types[(round*r.cfg.commands+k)%len(types)]
		batches := (len(ids) + r.cfg.batch - 1) / r.cfg.batch
		r.forEach(ctx, batches, func(b int) {
			batch := ids[b*r.cfg.batch : min(len(ids), (b+1)*r.cfg.batch)]
			cmd, err := newLoadCommand(requestType)
			if err != nil {
				r.enqueuePhase.record(0, err)
				r.addFailed(len(batch))
				return
			}
			idErrs, err := timed(r.enqueuePhase, func() (map[string]string, error) { return r.enqueue(ctx, cmd, batch) })
			r.mu.Lock()
			defer r.mu.Unlock()
			for _, c := range batch {
				if err != nil || idErrs[c.id] != "" {
					r.failed++
					continue
				}
				c.expected[cmd.CommandUUID] = k
				r.enqueued++
			}
		})
	}
}

func (r *loadRun) addFailed(n int) {
	r.mu.Lock()
	r.failed += n
	r.mu.Unlock()
}

// enqueue sends one enqueue call (without push) and returns the
// per-ID command errors of a partial success.
func (r *loadRun) enqueue(ctx context.Context, cmd *mdm.Command, batch []*channel) (map[string]string, error) {
	ids := make([]string, len(batch))
	for i, c := range batch {
		ids[i] = c.id
	}
	url := r.cfg.url + "/v1/enqueue/" + strings.Join(ids, ",") + "?nopush=1"
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, bytes.NewReader(cmd.Raw))
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth("nanomdm", r.cfg.apiKey)
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("reading enqueue answer: %w", err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return nil, nil
	case http.StatusMultiStatus:
		var ans struct {
			Status map[string]struct {
				CommandError string `json:"command_error"`
			} `json:"status"`
		}
		if err := json.Unmarshal(body, &ans); err != nil {
			return nil, fmt.Errorf("decoding enqueue answer: %w", err)
		}
		errs := map[string]string{}
		for id, st := range ans.Status {
			if st.CommandError != "" {
				errs[id] = st.CommandError
			}
		}
		return errs, nil
	}
	return nil, &apiError{status: resp.StatusCode, body: string(body)}
}

// share maps a command and channel to a number in [0, 1), the same in
// every run, which decides how the channel answers the command.
func share(salt, uuid, id string) float64 {
	h := fnv.New64a()
	io.WriteString(h, salt)
	io.WriteString(h, uuid)
	io.WriteString(h, id)
	return float64(h.Sum64()%1_000_000) / 1_000_000
}

// drainRound lets every enrolled channel poll and answer until the server
// has nothing more for it.
func (r *loadRun) drainRound(ctx context.Context) {
	r.forEach(ctx, len(r.channels), func(i int) {
		if c := r.channels[i]; c.enrolled {
			r.drain(ctx, c)
		}
	})
}

// drain plays one channel: Idle, then answer each command until the
// server answers empty. A command chosen for NotNow is answered NotNow on
// its first delivery; when the server then runs dry the device polls
// again, as it would later, to get it back. Every delivery is checked
// against what was enqueued for the channel.
func (r *loadRun) drain(ctx context.Context, c *channel) {
	res := &c.results
	firstSeen := map[string]bool{}
	pendingNotNow := map[string]bool{}
	lastOrder := -1
	limit := 3*len(c.expected) + 10
	polls := 0
	failed := false

	cmd, err := timed(r.drainPhase, func() (*mdm.Command, error) { return c.ch.Idle(ctx) })
	for err == nil {
		if cmd == nil {
			if len(pendingNotNow) == 0 || polls >= 3 {
				break
			}
			polls++
			cmd, err = timed(r.drainPhase, func() (*mdm.Command, error) { return c.ch.Idle(ctx) })
			continue
		}
		res.delivered++
		if res.delivered > limit {
			res.extra++ // the server keeps sending: stop
			break
		}
		order, ok := c.expected[cmd.CommandUUID]
		switch {
		case !ok:
			res.extra++
		case c.final[cmd.CommandUUID]:
			res.duplicated++
		case !firstSeen[cmd.CommandUUID]:
			firstSeen[cmd.CommandUUID] = true
			if order < lastOrder {
				res.misordered++
			}
			lastOrder = max(lastOrder, order)
		}
		var report simulator.Report
		switch {
		case ok && !pendingNotNow[cmd.CommandUUID] && !c.final[cmd.CommandUUID] &&
			share("notnow", cmd.CommandUUID, c.id) < r.cfg.notNow:
			report = simulator.NotNowAnswer(cmd)
		case share("error", cmd.CommandUUID, c.id) < r.cfg.errShare:
			report = simulator.ErrorAnswer(cmd)
		default:
			report = c.ch.RealisticAcknowledge(cmd)
		}
		next, sendErr := timed(r.drainPhase, func() (*mdm.Command, error) { return c.ch.Send(ctx, report) })
		if sendErr != nil {
			failed = true
			break
		}
		if ok && !c.final[cmd.CommandUUID] {
			switch report.Status {
			case mdm.StatusNotNow:
				res.notNow++
				pendingNotNow[cmd.CommandUUID] = true
			case mdm.StatusError:
				res.errors++
				c.final[cmd.CommandUUID] = true
				delete(pendingNotNow, cmd.CommandUUID)
			default:
				res.acknowledged++
				c.final[cmd.CommandUUID] = true
				delete(pendingNotNow, cmd.CommandUUID)
			}
		}
		cmd = next
	}
	if err != nil {
		failed = true
	}
	for uuid := range c.expected {
		if c.final[uuid] {
			continue
		}
		if failed {
			res.failed++
		} else {
			res.lost++
		}
	}
}
