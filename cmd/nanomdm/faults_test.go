//go:build faults

// The fault tests stop databases, kill the server with SIGKILL and
// SIGTERM it under load. They disturb anything else using the same
// database servers, so they only build with the faults tag and run with
// one command, which also restarts the databases however the tests end:
//
//	bash .ci/faults.sh
//
// They need PostgreSQL and MariaDB on this machine (.ci/sqldb.sh) and the
// permission to stop and start them (root).

package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/mdm/simulator"
)

// --- databases ------------------------------------------------------------

// database can be stopped and started again.
type database struct {
	name  string
	stop  func() error
	start func() error
	ready func() error
}

func runCmd(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

func pgVersion() string {
	entries, _ := os.ReadDir("/etc/postgresql")
	if len(entries) == 0 {
		return ""
	}
	return entries[len(entries)-1].Name()
}

var postgres = database{
	name: "PostgreSQL",
	stop: func() error { return runCmd("pg_ctlcluster", "--skip-systemctl-redirect", pgVersion(), "main", "stop") },
	start: func() error {
		return runCmd("pg_ctlcluster", "--skip-systemctl-redirect", pgVersion(), "main", "start")
	},
	ready: func() error { return runCmd("pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432") },
}

var mariadb = database{
	name: "MariaDB",
	stop: func() error {
		return runCmd("start-stop-daemon", "--stop", "--retry", "30", "--exec", "/usr/sbin/mariadbd")
	},
	start: func() error {
		return runCmd("start-stop-daemon", "--start", "--oknodo", "--background", "--exec", "/usr/sbin/mariadbd")
	},
	ready: func() error {
		return runCmd("mariadb-admin", "--protocol=tcp", "-h", "127.0.0.1", "-P", "3306", "-u", "root", "ping")
	},
}

// waitReady waits until db answers, for at most a minute.
func (db database) waitReady() error {
	deadline := time.Now().Add(time.Minute)
	for {
		err := db.ready()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready: %w", db.name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ensureRunning starts db unless it answers; tests register it as a
// cleanup so that a failure never leaves a database down.
func (db database) ensureRunning(t *testing.T) {
	if db.ready() == nil {
		return
	}
	if err := db.start(); err != nil {
		t.Errorf("restarting %s: %v", db.name, err)
	}
	if err := db.waitReady(); err != nil {
		t.Errorf("%v", err)
	}
}

// newFleet enrolls n devices at the server of setup.
func newFleet(t *testing.T, setup *serverSetup, n int) *fleet {
	t.Helper()
	return newFleetAt(t, setup.url(), setup.ca, &http.Client{Timeout: 15 * time.Second}, n)
}

// --- the tests --------------------------------------------------------------

// TestFaultDatabaseOutage stops the database in the middle of a load run.
// While it is down, device and API requests are answered 500 (never
// anything else, never a dropped connection) and the server stays up.
// Once the database is back the server serves again by itself within
// seconds, and every command enqueued before the outage reaches its
// device exactly once.
func TestFaultDatabaseOutage(t *testing.T) {
	for _, tc := range []struct {
		db database
		be backend
	}{
		{postgres, pgsqlBackend},
		{mariadb, mysqlBackend},
	} {
		t.Run(tc.be.name, func(t *testing.T) {
			t.Cleanup(func() { tc.db.ensureRunning(t) })
			testOutage(t, tc.db, tc.be)
		})
	}
}

func testOutage(t *testing.T, db database, be backend) {
	const devices, perDevice = 20, 8
	const outage = 5 * time.Second
	setup := newServerSetup(t, be.flags(t))
	p := setup.start()
	fl := newFleet(t, setup, devices)
	for i, d := range fl.devs {
		for j := 0; j < perDevice; j++ {
			if status := fl.enqueue(d, fmt.Sprintf("pre-%d-%d", i, j)); status != http.StatusOK {
				t.Fatalf("enqueue before the outage: %d", status)
			}
		}
	}

	var during struct {
		sync.Mutex
		statuses map[int]int
		errs     []error
	}
	during.statuses = map[int]int{}
	var down atomic.Bool
	var firstOK atomic.Int64 // unix nanos of the first 200 after the database is back
	var back atomic.Int64
	fl.observe(func(status int, err error) {
		switch {
		case down.Load():
			during.Lock()
			during.statuses[status]++
			if status == 0 {
				during.errs = append(during.errs, err)
			}
			during.Unlock()
		case back.Load() != 0 && status == http.StatusOK:
			firstOK.CompareAndSwap(0, time.Now().UnixNano())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { fl.run(ctx, 150*time.Millisecond, stop); close(done) }()

	time.Sleep(600 * time.Millisecond) // mid-load: devices are working through their queues
	start := time.Now()
	if err := db.stop(); err != nil {
		t.Fatalf("stopping %s: %v", db.name, err)
	}
	down.Store(true)
	t.Logf("%s stopped in %v", db.name, time.Since(start))
	time.Sleep(outage / 2)
	// The API fails cleanly too, and the process is alive.
	if status := fl.enqueue(fl.devs[0], "during-outage"); status != http.StatusInternalServerError {
		t.Errorf("enqueue during the outage: have %d, want 500", status)
	}
	if resp, err := http.Get(setup.url() + "/version"); err != nil {
		t.Errorf("/version during the outage: %v", err)
	} else {
		resp.Body.Close()
	}
	if status := getStatus(setup.url() + "/readyz"); status != http.StatusServiceUnavailable {
		t.Errorf("/readyz during the outage: have %d, want 503", status)
	}
	time.Sleep(outage / 2)
	if !p.alive() {
		t.Fatalf("server died during the outage:\n%s", p.logs())
	}
	down.Store(false)
	if err := db.start(); err != nil {
		t.Fatalf("starting %s: %v", db.name, err)
	}
	if err := db.waitReady(); err != nil {
		t.Fatal(err)
	}
	back.Store(time.Now().UnixNano())
	t.Logf("%s back after an outage of %v", db.name, time.Since(start))
	close(stop)
	<-done
	if ctx.Err() != nil {
		t.Errorf("devices did not settle within the time limit")
	}
	if status := getStatus(setup.url() + "/readyz"); status != http.StatusOK {
		t.Errorf("/readyz after the outage: have %d, want 200", status)
	}

	during.Lock()
	t.Logf("answers during the outage: %v", during.statuses)
	for status, n := range during.statuses {
		if status != http.StatusInternalServerError {
			t.Errorf("%d answers with status %d during the outage, want only 500", n, status)
		}
	}
	if len(during.errs) > 0 {
		t.Errorf("%d requests failed without an answer during the outage, e.g. %v", len(during.errs), during.errs[0])
	}
	if during.statuses[http.StatusInternalServerError] == 0 {
		t.Errorf("no device request hit the outage")
	}
	during.Unlock()
	if f := firstOK.Load(); f == 0 {
		t.Errorf("no request succeeded after the database came back")
	} else {
		recovery := time.Duration(f - back.Load())
		t.Logf("first 200 %v after %s answered again", recovery, db.name)
		if recovery > 10*time.Second {
			t.Errorf("server took %v to serve again after the database returned, want a few seconds", recovery)
		}
	}
	n := fl.check(t)
	t.Logf("%d commands enqueued before the outage, each delivered exactly once", n)
	if strings.Contains(p.logs(), "panic") {
		t.Errorf("the server logged a panic")
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.done
	if p.err != nil {
		t.Errorf("server exit after the outage: %v", p.err)
	}
}

// TestFaultKill9 kills the server with SIGKILL three times while devices
// work through their queues and commands keep being enqueued, restarting
// it on the same storage each time. No state is torn: every restart
// serves, and no device request is ever answered 500; every command whose
// enqueue was answered 200 is delivered until acknowledged, and no command
// comes back after its acknowledgement was accepted.
func TestFaultKill9(t *testing.T) {
	for _, be := range []backend{fileBackend, pgsqlBackend, mysqlBackend} {
		t.Run(be.name, func(t *testing.T) { testKill9(t, be) })
	}
}

func testKill9(t *testing.T, be backend) {
	const devices, perDevice, kills = 20, 5, 3
	setup := newServerSetup(t, be.flags(t))
	p := setup.start()
	fl := newFleet(t, setup, devices)
	for i, d := range fl.devs {
		for j := 0; j < perDevice; j++ {
			if status := fl.enqueue(d, fmt.Sprintf("pre-%d-%d", i, j)); status != http.StatusOK {
				t.Fatalf("enqueue: %d", status)
			}
		}
	}
	var mu sync.Mutex
	statuses := map[int]int{}
	fl.observe(func(status int, err error) {
		mu.Lock()
		statuses[status]++
		mu.Unlock()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { fl.run(ctx, 100*time.Millisecond, stop); close(done) }()
	// An operator keeps enqueueing.
	enqStop := make(chan struct{})
	enqDone := make(chan struct{})
	go func() {
		defer close(enqDone)
		for i := 0; ; i++ {
			select {
			case <-enqStop:
				return
			case <-time.After(30 * time.Millisecond):
			}
			fl.enqueue(fl.devs[rand.N(len(fl.devs))], fmt.Sprintf("live-%d", i))
		}
	}()

	for k := 0; k < kills; k++ {
		time.Sleep(700*time.Millisecond + rand.N(500*time.Millisecond))
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		t.Logf("kill %d: server killed", k+1)
		time.Sleep(300 * time.Millisecond)
		p = setup.start()
	}
	time.Sleep(500 * time.Millisecond)
	close(enqStop)
	<-enqDone
	close(stop)
	<-done
	if ctx.Err() != nil {
		t.Errorf("devices did not settle within the time limit")
	}
	mu.Lock()
	t.Logf("device answers over %d kills: %v (0 = no answer)", kills, statuses)
	if n := statuses[http.StatusInternalServerError]; n > 0 {
		t.Errorf("%d device requests answered 500: torn or corrupt state", n)
	}
	for status, n := range statuses {
		if status != 0 && status != http.StatusOK && status != http.StatusInternalServerError {
			t.Errorf("%d device requests answered %d", n, status)
		}
	}
	mu.Unlock()
	n := fl.check(t)
	t.Logf("%d commands answered 200 at enqueue; %d enqueues unanswered", n, len(fl.maybe))
	if strings.Contains(p.logs(), "panic") {
		t.Errorf("the server logged a panic:\n%s", p.logs())
	}
	if be.name == "file" {
		dir := storageDir(setup.args)
		var temps int
		filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
			if err == nil && strings.HasPrefix(info.Name(), ".tmp-") {
				temps++
			}
			return nil
		})
		t.Logf("temporary files left behind by the kills (harmless, never read): %d", temps)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.done
	if p.err != nil {
		t.Errorf("server exit: %v", p.err)
	}
}

// storageDir returns the value of -storage-dsn in args.
func storageDir(args []string) string {
	for i, a := range args {
		if a == "-storage-dsn" && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// TestFaultGracefulShutdown sends SIGTERM while devices are busy, some of
// them in the middle of sending a slow body, and the webhook has events
// queued. Every request that had started is answered 200 (no 5xx, no
// reset), new connections are refused, the webhook receives every event,
// and the process exits 0 within the shutdown timeout.
func TestFaultGracefulShutdown(t *testing.T) {
	var events atomic.Int64
	hook := newHookServer(t, 5*time.Millisecond, &events)
	const shutdownTimeout = 10 * time.Second
	// The devices below make events faster than two workers deliver them
	// to a 5 ms receiver; the queue is sized so that none is dropped for
	// being full (that is TestStallingEndpoint's subject), leaving a
	// backlog for the shutdown to flush.
	setup := newServerSetup(t, fileBackend.flags(t), "-webhook-url", hook, "-webhook-workers", "2",
		"-webhook-queue-size", "100000", "-shutdown-timeout", shutdownTimeout.String())
	p := setup.start()
	fl := newFleet(t, setup, 10)
	enrollEvents := int64(2 * len(fl.devs))

	// Slow check-ins: headers and half the body now, the rest after SIGTERM.
	const slow = 10
	type slowResult struct {
		status int
		err    error
		at     time.Time
	}
	results := make(chan slowResult, slow)
	release := make(chan struct{})
	for i := 0; i < slow; i++ {
		d := fl.devs[i%len(fl.devs)]
		body, err := mdm.EncodePlist(d.dev.Channel.TokenUpdateMessage())
		if err != nil {
			t.Fatalf("encoding: %v", err)
		}
		req, err := d.dev.Transport.NewRequest(context.Background(), d.dev.Identity, body, true)
		if err != nil {
			t.Fatalf("building request: %v", err)
		}
		conn, err := net.Dial("tcp", setup.addr)
		if err != nil {
			t.Fatalf("dialing: %v", err)
		}
		defer conn.Close()
		head := fmt.Sprintf("PUT /mdm HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nMdm-Signature: %s\r\nContent-Length: %d\r\n\r\n",
			setup.addr, mdm.CheckinContentType, req.Header.Get("Mdm-Signature"), len(body))
		if _, err := io.WriteString(conn, head+string(body[:len(body)/2])); err != nil {
			t.Fatalf("writing: %v", err)
		}
		go func() {
			<-release
			if _, err := conn.Write(body[len(body)/2:]); err != nil {
				results <- slowResult{err: err, at: time.Now()}
				return
			}
			conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				results <- slowResult{err: err, at: time.Now()}
				return
			}
			resp.Body.Close()
			results <- slowResult{status: resp.StatusCode, at: time.Now()}
		}()
	}

	// Fast traffic on fresh connections, each request timed against SIGTERM.
	var sigterm atomic.Int64
	type outcome struct {
		started time.Time
		status  int
		err     error
	}
	var mu sync.Mutex
	var outcomes []outcome
	var ok200 atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, d := range fl.devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &simulator.Transport{URL: setup.url() + "/mdm", Client: &http.Client{
				Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}
			c := *d.dev.Channel
			dev := *d.dev
			dev.Transport = tr
			c.Device = &dev
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				_, err := c.Send(context.Background(), simulator.Report{Status: mdm.StatusIdle})
				o := outcome{started: start, status: simulator.StatusOf(err), err: err}
				if err == nil {
					ok200.Add(1)
				}
				mu.Lock()
				outcomes = append(outcomes, o)
				mu.Unlock()
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	time.Sleep(time.Second)
	sigterm.Store(time.Now().UnixNano())
	termAt := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	time.Sleep(1500 * time.Millisecond)
	close(release)
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	// Requests in flight get -shutdown-timeout, then queued webhook events
	// get -shutdown-timeout again (docs/operations-guide.md, webhook).
	select {
	case <-p.done:
	case <-time.After(2*shutdownTimeout + 5*time.Second):
		t.Fatalf("server still running %v after SIGTERM", time.Since(termAt))
	}
	exitAfter := time.Since(termAt)
	if p.err != nil {
		t.Errorf("exit after SIGTERM: %v, want status 0\n%s", p.err, p.logs())
	}
	t.Logf("exited %v after SIGTERM (shutdown timeout %v)", exitAfter, shutdownTimeout)

	for i := 0; i < slow; i++ {
		r := <-results
		if r.err != nil || r.status != http.StatusOK {
			t.Errorf("slow request in flight at SIGTERM: have %d %v, want 200", r.status, r.err)
		}
		if d := r.at.Sub(termAt); d > shutdownTimeout {
			t.Errorf("slow request in flight at SIGTERM answered %v after it, beyond the shutdown timeout", d)
		}
	}
	// A request counts as in flight at SIGTERM when it started at least
	// 50ms before the signal; later ones may meet the closed listener.
	var before, after, refused int
	for _, o := range outcomes {
		switch {
		case o.status >= 500:
			t.Errorf("a request answered %d during shutdown", o.status)
		case o.status == 0 && o.started.Before(termAt.Add(-50*time.Millisecond)):
			t.Errorf("a request started %v before SIGTERM failed without an answer: %v", termAt.Sub(o.started), o.err)
		case o.status == 0:
			// Started after shutdown began: refused, or, if the kernel
			// had queued the connection when the listener closed, cut
			// before any answer. Neither was in flight.
			refused++
		case o.started.Before(termAt):
			before++
		default:
			after++
		}
	}
	t.Logf("fast requests: %d started before SIGTERM and answered 200, %d started later and answered 200, %d started later and refused or cut unanswered", before, after, refused)

	// Every event of every answered request reaches the webhook.
	want := enrollEvents + ok200.Load() + slow
	if got := events.Load(); got != want {
		t.Errorf("webhook received %d events, want %d (enrolment, answered reports, slow check-ins); server log lines about drops:\n%s",
			got, want, grepLines(p.logs(), "dropped"))
	}
}

// newHookServer is a webhook receiver that takes delay per event and
// counts them.
func newHookServer(t *testing.T, delay time.Duration, n *atomic.Int64) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening: %v", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		time.Sleep(delay)
		n.Add(1)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String() + "/hook"
}
