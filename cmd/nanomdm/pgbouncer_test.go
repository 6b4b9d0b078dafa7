package main

// The PostgreSQL backend through PgBouncer in transaction pooling mode.

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/storage/storagetest/sqldb"
)

// dsnFields parses a key=value PostgreSQL DSN.
func dsnFields(dsn string) map[string]string {
	m := map[string]string{}
	for _, f := range strings.Fields(dsn) {
		if k, v, ok := strings.Cut(f, "="); ok {
			m[k] = v
		}
	}
	return m
}

// startPgBouncer runs PgBouncer in transaction pooling mode in front of
// database db of the server in base, with a small pool so that the
// statements of many client connections share few server connections. It
// returns the DSN of the pooled database.
func startPgBouncer(t *testing.T, base, db string, poolSize int) string {
	t.Helper()
	requireBinaries(t, "/usr/sbin/pgbouncer")
	f := dsnFields(base)
	host, port, pguser := f["host"], f["port"], f["user"]
	if host == "" || port == "" || pguser == "" {
		t.Fatalf("NANOMDM_TEST_PGSQL_DSN %q: want host=, port= and user= (key=value form)", base)
	}
	// Not t.TempDir: PgBouncer refuses to run as root, so it runs as
	// postgres here and must read its directory.
	dir, err := os.MkdirTemp("", "nanomdm-pgbouncer-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	listen := freeAddr(t)
	_, lport, _ := net.SplitHostPort(listen)
	// auth_type any: the pooler logs in to the server as the user named
	// in [databases]; the server trusts loopback (.ci/sqldb.sh).
	// lib/pq sends extra_float_digits at start-up, which PgBouncer does
	// not track: ignore it.
	conf := fmt.Sprintf(`[databases]
nanomdm = host=%s port=%s dbname=%s user=%s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %s
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = %d
max_client_conn = 500
ignore_startup_parameters = extra_float_digits
`, host, port, db, pguser, lport, poolSize)
	confPath := filepath.Join(dir, "pgbouncer.ini")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "pgbouncer.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/usr/sbin/pgbouncer", confPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("PgBouncer does not run as root, and there is no postgres user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting PgBouncer: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		logf.Close()
	})
	dsn := fmt.Sprintf("host=127.0.0.1 port=%s user=%s dbname=nanomdm sslmode=disable", lport, pguser)
	probe, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := probe.Ping()
		if err == nil {
			return dsn
		}
		select {
		case <-done:
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("PgBouncer exited at start:\n%s", b)
		default:
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("PgBouncer did not answer: %v\n%s", err, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestPgBouncer runs two instances on one PostgreSQL database through
// PgBouncer in transaction pooling mode (a pool of 3 server connections
// for their 32 client connections), with prepared statements off
// (storage option prepare=0). Both create or check the schema at start
// and enroll devices (certificate-hash locks) through the pooler, and
// under load every request is answered 200 and every command delivered
// and answered exactly once. No advisory lock is left held on the server
// afterwards: a session lock taken through the pooler would stay on a
// server connection that other clients then share.
func TestPgBouncer(t *testing.T) {
	requireBinaries(t, "/usr/sbin/pgbouncer")
	base := sqlTestDSN(t, "NANOMDM_TEST_PGSQL_DSN")
	admin := openAdmin(t, "postgres", base)
	db := sqldb.RandomName("nanomdm_pgb_")
	if _, err := admin.Exec("CREATE DATABASE " + db); err != nil {
		t.Fatalf("creating database: %v", err)
	}
	t.Cleanup(func() { // after PgBouncer has stopped (cleanups run last first)
		if _, err := admin.Exec("DROP DATABASE " + db + " WITH (FORCE)"); err != nil {
			t.Errorf("dropping database %s: %v", db, err)
		}
	})
	dsn := startPgBouncer(t, base, db, 3)

	flags := []string{"-storage", "pgsql", "-storage-dsn", dsn, "-storage-options", "migrate=1,prepare=0"}
	setups, _ := instances(t, [][]string{flags, flags})
	var procs []*proc
	for _, s := range setups {
		procs = append(procs, s.start())
	}

	const devices, perDevice = 15, 4
	var fleets []*fleet
	var answers statusCounter
	for i, s := range setups {
		fl := newFleetAt(t, s.url(), s.ca, &http.Client{Timeout: 15 * time.Second}, devices)
		for j, d := range fl.devs {
			for k := 0; k < perDevice; k++ {
				if status := fl.enqueue(d, fmt.Sprintf("pgb-%d-%d-%d", i, j, k)); status != http.StatusOK {
					t.Fatalf("enqueue: %d", status)
				}
			}
		}
		fl.observe(answers.add)
		fleets = append(fleets, fl)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stop := make(chan struct{})
	done := make(chan struct{}, len(fleets))
	var live []*liveEnqueuer
	start := time.Now()
	for i, fl := range fleets {
		live = append(live, operator(fl, fmt.Sprintf("pgb-live-%d", i), 20*time.Millisecond))
		go func() { fl.run(ctx, 50*time.Millisecond, stop); done <- struct{}{} }()
	}
	time.Sleep(3 * time.Second)
	for _, e := range live {
		e.stop()
	}
	close(stop)
	for range fleets {
		<-done
	}
	if ctx.Err() != nil {
		t.Errorf("devices did not settle within the time limit")
	}
	elapsed := time.Since(start)
	statuses, requests := answers.snapshot()
	n, enq := 0, 0
	for i, fl := range fleets {
		n += fl.check(t)
		enq += live[i].count()
	}
	t.Logf("through PgBouncer: %d device requests %v, %d live enqueues, %d commands delivered exactly once, %v",
		requests, statuses, enq, n, elapsed.Round(time.Millisecond))
	for status, k := range statuses {
		if status != http.StatusOK {
			t.Errorf("%d device requests answered %d, want only 200", k, status)
		}
	}

	// Every device enrolls again with a new identity, all at once, three
	// times: each Authenticate takes the lock on its new certificate's
	// hash, while the other devices' statements share the pool's three
	// connections.
	var wg sync.WaitGroup
	var failed atomic.Int64
	reenroll := time.Now()
	for _, fl := range fleets {
		for _, d := range fl.devs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := 0; k < 3; k++ {
					id, err := setups[0].ca.Issue(d.dev.UDID())
					if err != nil {
						t.Errorf("issuing identity: %v", err)
						return
					}
					d.dev.Identity = id
					if err := d.dev.Enroll(context.Background()); err != nil {
						if failed.Add(1) == 1 {
							t.Errorf("enrolling again: %v", err)
						}
					}
				}
			}()
		}
	}
	wg.Wait()
	t.Logf("%d devices enrolled again three times at once in %v, %d failures", 2*devices, time.Since(reenroll).Round(time.Millisecond), failed.Load())

	// A restart migrates again, taking the schema lock through the pooler.
	procs[1].cmd.Process.Signal(syscall.SIGTERM)
	<-procs[1].done
	restart := time.Now()
	procs[1] = setups[1].start()
	t.Logf("instance 2 restarted with migrate=1 through the pooler in %v", time.Since(restart).Round(time.Millisecond))

	var held int
	if err := admin.QueryRow(`SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
WHERE l.locktype = 'advisory' AND d.datname = $1`, db).Scan(&held); err != nil {
		t.Fatalf("reading pg_locks: %v", err)
	}
	if held != 0 {
		t.Errorf("%d advisory locks still held on the server after the run, want 0", held)
	}
	for i, p := range procs {
		if logs := p.logs(); strings.Contains(logs, "panic") || strings.Contains(logs, "prepared statement") {
			t.Errorf("instance %d logged a panic or a prepared-statement error:\n%s", i+1, grepLines(logs, "failed"))
		}
	}
}
