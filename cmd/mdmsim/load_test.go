package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/certverify"
	"github.com/nanomdm/nanomdm/cmd/internal/cli"
	mdmhttp "github.com/nanomdm/nanomdm/http"
	"github.com/nanomdm/nanomdm/http/api"
	httpmdm "github.com/nanomdm/nanomdm/http/mdm"
	"github.com/nanomdm/nanomdm/log"
	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/mdm/simulator"
	"github.com/nanomdm/nanomdm/service/certauth"
	"github.com/nanomdm/nanomdm/service/nanomdm"
	"github.com/nanomdm/nanomdm/storage"
	"github.com/nanomdm/nanomdm/storage/file"
	"github.com/nanomdm/nanomdm/storage/inmem"
)

const testAPIKey = "load-test-key"

// writeCA creates a CA in a temporary directory and returns it with the
// paths of its certificate and key.
func writeCA(t *testing.T) (ca *simulator.CA, certPath, keyPath string) {
	t.Helper()
	ca, err := simulator.NewCA("load test CA")
	if err != nil {
		t.Fatalf("creating CA: %v", err)
	}
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		t.Fatalf("encoding CA key: %v", err)
	}
	dir := t.TempDir()
	certPath, keyPath = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key")
	if err := os.WriteFile(certPath, ca.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return ca, certPath, keyPath
}

// testServer serves store the way cmd/nanomdm does: /mdm behind the
// identity middleware and certauth, /v1/enqueue/ behind Basic auth.
// Each of more may add routes once the server's URL is known.
func testServer(t *testing.T, ca *simulator.CA, store storage.AllStorage, more ...func(mux *http.ServeMux, url string)) *httptest.Server {
	t.Helper()
	verifier, err := certverify.NewPoolVerifier(ca.CertPEM(), nil)
	if err != nil {
		t.Fatalf("creating verifier: %v", err)
	}
	svc := certauth.New(nanomdm.New(store), store)
	mux := http.NewServeMux()
	mux.Handle("/mdm", httpmdm.IdentityMiddleware(httpmdm.CheckinAndCommandHandler(svc), verifier))
	mux.Handle("/v1/enqueue/", mdmhttp.BasicAuthMiddleware(
		http.StripPrefix("/v1/enqueue/", api.EnqueueHandler(store)), mdmhttp.APIUsername, testAPIKey, "nanomdm"))
	srv := httptest.NewServer(mdmhttp.TraceLoggingMiddleware(mux, log.Nop))
	t.Cleanup(srv.Close)
	for _, f := range more {
		f(mux, srv.URL)
	}
	return srv
}

// runLoadTest runs mdmsim load with -json and the given extra flags and
// returns the summary and the error of the run.
func runLoadTest(t *testing.T, srvURL, certPath, keyPath, fleet string, extra ...string) (*Summary, error) {
	t.Helper()
	args := append([]string{"mdmsim", "load", "-json", "-url", srvURL, "-api-key", testAPIKey,
		"-ca-cert", certPath, "-ca-key", keyPath, "-fleet", fleet}, extra...)
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), args, &stdout, &stderr)
	var s Summary
	if jerr := json.Unmarshal(stdout.Bytes(), &s); jerr != nil {
		t.Fatalf("decoding summary (run error %v): %v\nstdout: %s\nstderr: %s", err, jerr, stdout.String(), stderr.String())
	}
	return &s, err
}

func phaseOf(t *testing.T, s *Summary, name string) PhaseSummary {
	t.Helper()
	for _, p := range s.Phases {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("no phase %q in summary", name)
	return PhaseSummary{}
}

func TestLoad(t *testing.T) {
	for _, tc := range []struct {
		name    string
		store   func(t *testing.T) storage.AllStorage
		keyType string
	}{
		{"inmem", func(t *testing.T) storage.AllStorage { return inmem.New() }, "ecdsa"},
		{"file", func(t *testing.T) storage.AllStorage {
			s, err := file.New(t.TempDir())
			if err != nil {
				t.Fatalf("opening file storage: %v", err)
			}
			return s
		}, "rsa"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca, certPath, keyPath := writeCA(t)
			srv := testServer(t, ca, tc.store(t))
			fleet := filepath.Join(t.TempDir(), "fleet.json")
			const devices, rounds, commands = 12, 2, 3
			s, err := runLoadTest(t, srv.URL, certPath, keyPath, fleet,
				"-devices", fmt.Sprint(devices), "-user-channels", "0.5", "-workers", "4",
				"-rounds", fmt.Sprint(rounds), "-commands", fmt.Sprint(commands), "-batch", "5",
				"-notnow", "0.3", "-error", "0.2", "-key-type", tc.keyType, "-server-pid", fmt.Sprint(os.Getpid()))
			if err != nil {
				t.Fatalf("load run: %v (problems %v)", err, s.Problems)
			}
			channels := devices + devices/2
			if !s.OK || s.Channels != channels || s.Minted != devices {
				t.Errorf("summary: ok %v, %d channels, %d minted; want ok, %d channels, %d minted", s.OK, s.Channels, s.Minted, channels, devices)
			}
			c := s.Commands
			want := channels * rounds * commands
			if c.Enqueued != want || c.Answered != want || c.Acknowledged+c.Errors != want {
				t.Errorf("commands: %+v; want %d enqueued and answered", c, want)
			}
			if c.NotNow == 0 || c.Errors == 0 || c.Delivered != want+c.NotNow {
				t.Errorf("commands: %+v; want some NotNow and Error answers, each NotNow delivered once more", c)
			}
			if c.Lost+c.Duplicated+c.Extra+c.Misordered+c.Failed != 0 {
				t.Errorf("commands: %+v; want no lost, duplicated, extra, misordered or failed", c)
			}
			enroll := phaseOf(t, s, "enroll")
			if enroll.Ops != devices*2+devices/2 {
				t.Errorf("enroll: %d requests, want %d", enroll.Ops, devices*2+devices/2)
			}
			loop := phaseOf(t, s, "command loop")
			// Each channel and round: an Idle, one report per delivery,
			// and an Idle to fetch NotNow commands back when the queue
			// ran dry.
			if min := channels*rounds + c.Delivered; loop.Ops < min {
				t.Errorf("command loop: %d requests, want at least %d", loop.Ops, min)
			}
			if enq := phaseOf(t, s, "enqueue"); enq.Ops != rounds*commands*((channels+4)/5) {
				t.Errorf("enqueue: %d calls, want %d", enq.Ops, rounds*commands*((channels+4)/5))
			}
			if loop.ServerCPUPerOpMS == nil || s.Server == nil || s.Server.PeakRSSMB <= 0 {
				t.Errorf("-server-pid: no CPU or RSS reported: %+v %+v", loop, s.Server)
			}
			if loop.LatencyMS.Max <= 0 || loop.LatencyMS.P50 > loop.LatencyMS.Max {
				t.Errorf("command loop latency: %+v", loop.LatencyMS)
			}

			// A second run reuses the fleet: nothing minted, enrolled again.
			s, err = runLoadTest(t, srv.URL, certPath, keyPath, fleet, "-devices", fmt.Sprint(devices), "-rounds", "1",
				"-commands", "1", "-key-type", tc.keyType)
			if err != nil || s.Minted != 0 || s.Commands.Answered != devices {
				t.Errorf("second run: minted %d, answered %d, err %v; want 0, %d, nil", s.Minted, s.Commands.Answered, err, devices)
			}
		})
	}
}

// faultyStore breaks the command queue on purpose, to prove that the
// tool notices.
type faultyStore struct {
	storage.AllStorage
	mu       sync.Mutex
	drop     bool           // enqueue silently skips the first ID of each call
	repeat   bool           // the first answered command is offered again once
	answered []*mdm.Command // commands with a final answer
	repeated bool
	queued   map[string]*mdm.Command
}

func (f *faultyStore) EnqueueCommand(ctx context.Context, ids []string, cmd *mdm.Command) (map[string]error, error) {
	f.mu.Lock()
	if f.queued == nil {
		f.queued = map[string]*mdm.Command{}
	}
	f.queued[cmd.CommandUUID] = cmd
	f.mu.Unlock()
	if f.drop && len(ids) > 1 {
		ids = ids[1:]
	}
	return f.AllStorage.EnqueueCommand(ctx, ids, cmd)
}

func (f *faultyStore) StoreCommandReport(r *mdm.Request, report *mdm.CommandResults) error {
	f.mu.Lock()
	if report.Status == mdm.StatusAcknowledged || report.Status == mdm.StatusError {
		if c := f.queued[report.CommandUUID]; c != nil {
			f.answered = append(f.answered, c)
		}
	}
	f.mu.Unlock()
	return f.AllStorage.StoreCommandReport(r, report)
}

func (f *faultyStore) RetrieveNextCommand(r *mdm.Request, skipNotNow bool) (*mdm.Command, error) {
	f.mu.Lock()
	if f.repeat && !f.repeated && len(f.answered) > 0 {
		f.repeated = true
		c := f.answered[0]
		f.mu.Unlock()
		return c, nil
	}
	f.mu.Unlock()
	return f.AllStorage.RetrieveNextCommand(r, skipNotNow)
}

func TestLoadDetectsFaults(t *testing.T) {
	for _, tc := range []struct {
		name  string
		store *faultyStore
		check func(c CommandSummary) bool
	}{
		{"lost", &faultyStore{drop: true}, func(c CommandSummary) bool { return c.Lost > 0 }},
		{"duplicated or extra", &faultyStore{repeat: true}, func(c CommandSummary) bool { return c.Duplicated+c.Extra > 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca, certPath, keyPath := writeCA(t)
			tc.store.AllStorage = inmem.New()
			srv := testServer(t, ca, tc.store)
			s, err := runLoadTest(t, srv.URL, certPath, keyPath, filepath.Join(t.TempDir(), "fleet.json"),
				"-devices", "6", "-workers", "2", "-rounds", "1", "-commands", "2", "-key-type", "ecdsa")
			if err == nil || s.OK {
				t.Fatalf("load run against a faulty server succeeded: %+v", s.Commands)
			}
			if !tc.check(s.Commands) {
				t.Errorf("commands: %+v; the fault is not counted", s.Commands)
			}
			if len(s.Problems) == 0 {
				t.Errorf("no problems listed")
			}
		})
	}
}

func TestLoadServerDown(t *testing.T) {
	_, certPath, keyPath := writeCA(t)
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	s, err := runLoadTest(t, srv.URL, certPath, keyPath, filepath.Join(t.TempDir(), "fleet.json"),
		"-devices", "3", "-workers", "2", "-rounds", "1", "-key-type", "ecdsa")
	if err == nil || s.OK {
		t.Fatalf("load run against no server succeeded")
	}
	enroll := phaseOf(t, s, "enroll")
	if enroll.Errors["connection refused"] != 3 {
		t.Errorf("enroll errors: have %v, want 3 connection refused", enroll.Errors)
	}
	if s.Commands.Failed != 6 {
		t.Errorf("failed commands: have %d, want 6 (3 devices × 2 commands)", s.Commands.Failed)
	}
}

func TestLoadFleetOfAnotherCA(t *testing.T) {
	ca, _, _ := writeCA(t)
	fleet := filepath.Join(t.TempDir(), "fleet.json")
	if _, err := loadFleet(context.Background(), fleet, ca, caIssuer(ca), "ecdsa", 2, 2); err != nil {
		t.Fatalf("minting: %v", err)
	}
	other, _, _ := writeCA(t)
	if _, err := loadFleet(context.Background(), fleet, other, caIssuer(other), "ecdsa", 2, 2); err == nil || !strings.Contains(err.Error(), "another CA") {
		t.Errorf("fleet of another CA: have %v, want an error naming the CA", err)
	}
	if _, err := loadFleet(context.Background(), fleet, ca, caIssuer(ca), "rsa", 2, 2); err == nil || !strings.Contains(err.Error(), "ecdsa identities") {
		t.Errorf("fleet of another key type: have %v, want an error", err)
	}
	f, err := loadFleet(context.Background(), fleet, ca, caIssuer(ca), "ecdsa", 3, 2)
	if err != nil || f.minted != 1 || len(f.identities) != 3 {
		t.Fatalf("growing the fleet: minted %v, err %v; want 1 more", f, err)
	}
}

func TestLoadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-devices", "0"},
		{"-notnow", "1.5"},
		{"-key-type", "dsa"},
		{"-signature", "md5"},
		{"-db-driver", "pgsql"},
		{"-api-key", ""},
		{"extra"},
	} {
		var stderr bytes.Buffer
		full := append([]string{"load", "-api-key", "k"}, args...)
		if _, err := parseLoadFlags(full, &stderr); err == nil {
			t.Errorf("flags %q: accepted", args)
		}
	}
}

// freshDatabase creates a database of its own for the test, next to the
// one dsn names, and returns its DSN: the session counts are per
// database, and other tests share the configured one.
func freshDatabase(t *testing.T, driver, dsn string) string {
	t.Helper()
	name := fmt.Sprintf("nanomdm_load_%d_%s", time.Now().Unix(), strings.ToLower(simulator.NewUDID()[:8]))
	driverName := map[string]string{"pgsql": "postgres", "mysql": "mysql"}[driver]
	admin, err := sql.Open(driverName, dsn)
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	defer admin.Close()
	quote := func(n string) string { return `"` + n + `"` }
	var fresh string
	if driver == "mysql" {
		quote = func(n string) string { return "`" + n + "`" }
		i := strings.LastIndex(dsn, "/")
		rest := ""
		if j := strings.IndexByte(dsn[i:], '?'); j >= 0 {
			rest = dsn[i+j:]
		}
		fresh = dsn[:i+1] + name + rest
	} else {
		fields := strings.Fields(dsn)
		for i, f := range fields {
			if strings.HasPrefix(f, "dbname=") {
				fields[i] = "dbname=" + name
			}
		}
		fresh = strings.Join(fields, " ")
		if !strings.Contains(fresh, "dbname="+name) {
			t.Skipf("cannot name a fresh database in DSN %q", dsn)
		}
	}
	if _, err := admin.Exec("CREATE DATABASE " + quote(name)); err != nil {
		t.Fatalf("creating database %s: %v", name, err)
	}
	t.Cleanup(func() {
		admin, err := sql.Open(driverName, dsn)
		if err != nil {
			return
		}
		defer admin.Close()
		if _, err := admin.Exec("DROP DATABASE " + quote(name)); err != nil {
			t.Logf("dropping database %s: %v", name, err)
		}
	})
	return fresh
}

// TestLoadSQL runs the tool against an in-process server on each SQL
// backend whose test database is configured (see .ci/sqldb.sh), with the
// database probe: sessions opened stay within the pool, and the
// database's CPU time is read when it runs on this machine.
func TestLoadSQL(t *testing.T) {
	for _, driver := range []string{"pgsql", "mysql"} {
		t.Run(driver, func(t *testing.T) {
			dsn := os.Getenv(map[string]string{"pgsql": "NANOMDM_TEST_PGSQL_DSN", "mysql": "NANOMDM_TEST_MYSQL_DSN"}[driver])
			if dsn == "" {
				t.Skipf("no %s test database configured", driver)
			}
			dsn = freshDatabase(t, driver, dsn)
			const pool = 4
			store, closeStore, err := cli.OpenStorage(context.Background(), driver, dsn,
				fmt.Sprintf("migrate=1,max_open_conns=%d", pool), log.Nop)
			if err != nil {
				t.Fatalf("opening %s storage: %v", driver, err)
			}
			defer closeStore()
			ca, certPath, keyPath := writeCA(t)
			srv := testServer(t, ca, store)
			s, err := runLoadTest(t, srv.URL, certPath, keyPath, filepath.Join(t.TempDir(), "fleet.json"),
				"-devices", "10", "-workers", "4", "-rounds", "1", "-commands", "2", "-key-type", "ecdsa",
				"-notnow", "0.2", "-db-driver", driver, "-db-dsn", dsn)
			if err != nil {
				t.Fatalf("load run: %v (problems %v)", err, s.Problems)
			}
			if s.Commands.Answered != 20 {
				t.Errorf("answered %d commands, want 20", s.Commands.Answered)
			}
			if s.DB == nil || s.DB.SessionsOpened == nil || s.DB.SessionsOpenAtEnd == nil {
				t.Fatalf("no database sessions reported: %+v", s.DB)
			}
			// MariaDB's counter is server-wide: other clients may add to it.
			if driver == "pgsql" && *s.DB.SessionsOpened > pool {
				t.Errorf("%d sessions opened, more than the pool of %d", *s.DB.SessionsOpened, pool)
			}
			if *s.DB.SessionsOpenAtEnd > pool {
				t.Errorf("%d sessions open at the end, more than the pool of %d", *s.DB.SessionsOpenAtEnd, pool)
			}
			if s.DB.PID != 0 && phaseOf(t, s, "command loop").DBCPUMS == nil {
				t.Errorf("database pid %d found, but no database CPU reported", s.DB.PID)
			}
		})
	}
}
