package main

// The server on a replicated database: three instances, each on its own
// node of a MariaDB Galera cluster (.ci/galera.sh), behind nginx with the
// site file from docs/deploy/, under load with faults.

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/mdm/simulator"
)

// galeraScript starts and stops the cluster; the test runs in its package
// directory.
const galeraScript = "../../.ci/galera.sh"

// galeraNode is one node of the cluster the script started.
type galeraNode struct {
	n   int
	pid int
	dsn string // root@tcp(127.0.0.1:PORT)/ without a database
}

type galeraCluster struct {
	t     *testing.T
	dir   string
	nodes []galeraNode
}

// requireBinaries skips t unless every path exists (CI installs them:
// .ci/test.sh).
func requireBinaries(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("%s missing (.ci/test.sh installs it): %v", p, err)
		}
	}
}

// startGalera starts a three-node cluster and stops it when the test
// ends, whatever happens.
func startGalera(t *testing.T) *galeraCluster {
	t.Helper()
	requireBinaries(t, "/usr/sbin/mariadbd", "/usr/lib/galera/libgalera_smm.so", "/usr/bin/rsync")
	// Not t.TempDir: the nodes run as the mysql user, which must reach
	// their directories.
	dir, err := os.MkdirTemp("", "nanomdm-galera-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	c := &galeraCluster{t: t, dir: dir}
	t.Cleanup(func() {
		if out, err := exec.Command("bash", galeraScript, "stop", dir).CombinedOutput(); err != nil {
			t.Errorf("stopping the Galera cluster: %v\n%s", err, out)
		}
		if !t.Failed() {
			os.RemoveAll(dir)
		} else {
			t.Logf("Galera node logs kept in %s", dir)
		}
	})
	start := time.Now()
	cmd := exec.Command("bash", galeraScript, "start", dir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("starting the Galera cluster: %v\n%s", err, stderr.String())
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var node galeraNode
		if _, err := fmt.Sscanf(line, "node %d %d %s", &node.n, &node.pid, &node.dsn); err != nil {
			t.Fatalf("galera.sh printed %q: %v", line, err)
		}
		c.nodes = append(c.nodes, node)
	}
	if len(c.nodes) != 3 {
		t.Fatalf("galera.sh started %d nodes, want 3:\n%s", len(c.nodes), out)
	}
	t.Logf("Galera cluster of 3 up in %v", time.Since(start).Round(100*time.Millisecond))
	return c
}

// script runs galera.sh with args on the cluster (stop-node, start-node).
func (c *galeraCluster) script(args ...string) error {
	out, err := exec.Command("bash", append([]string{galeraScript, args[0], c.dir}, args[1:]...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("galera.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// exec runs statements on node i (0-based) as root.
func (c *galeraCluster) exec(i int, stmts ...string) {
	c.t.Helper()
	db, err := sql.Open("mysql", c.nodes[i].dsn)
	if err != nil {
		c.t.Fatal(err)
	}
	defer db.Close()
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			c.t.Fatalf("node %d: %s: %v", i+1, s, err)
		}
	}
}

// status returns a wsrep status variable of node i.
func (c *galeraCluster) status(i int, name string) string {
	db, err := sql.Open("mysql", c.nodes[i].dsn)
	if err != nil {
		return err.Error()
	}
	defer db.Close()
	var k, v string
	if err := db.QueryRow("SHOW STATUS LIKE '"+name+"'").Scan(&k, &v); err != nil {
		return err.Error()
	}
	return v
}

// mariadbdPIDs returns the node processes now running (a restarted node
// has a new one).
func (c *galeraCluster) mariadbdPIDs() []int {
	var pids []int
	for _, n := range c.nodes {
		b, err := os.ReadFile(filepath.Join(c.dir, fmt.Sprintf("node%d", n.n), "mariadbd.pid"))
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// procCPU returns the CPU time (user and system) pid has used, 0 when it
// cannot be read.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses: utime and
	// stime are the 12th and 13th, in clock ticks (100 a second).
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(fields[11], 10, 64)
	st, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

func cpuOf(pids []int) time.Duration {
	var d time.Duration
	for _, p := range pids {
		d += procCPU(p)
	}
	return d
}

// --- nginx ----------------------------------------------------------------

// nginxSite is the deployment's nginx site, the file under test.
const nginxSite = "../../docs/deploy/nginx-nanomdm.conf"

type nginxProxy struct {
	url    string // https://127.0.0.1:PORT
	http   string // http://127.0.0.1:PORT (redirects)
	client *http.Client
	access string // the access log: one "upstream status" line a request
}

// startNginx runs nginx with the site file of docs/deploy, changed only
// where a deployment changes it: the upstream servers, the listen
// addresses, the certificate paths. The file's own settings (locations,
// headers, timeouts, TLS) are what the test exercises.
func startNginx(t *testing.T, upstreams []string, caPath string) *nginxProxy {
	t.Helper()
	requireBinaries(t, "/usr/sbin/nginx")
	dir := t.TempDir()
	site, err := os.ReadFile(nginxSite)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath, pool := serverCert(t, dir)
	httpAddr, httpsAddr := freeAddr(t), freeAddr(t)
	var servers strings.Builder
	for _, u := range upstreams {
		fmt.Fprintf(&servers, "    server %s;\n", u)
	}
	conf := string(site)
	for _, r := range []struct{ old, new string }{
		{"    server 127.0.0.1:9000;   # NANOMDM_LISTEN\n", servers.String()},
		{"    listen 80;\n", "    listen " + httpAddr + ";\n"},
		{"    listen [::]:80;\n", ""},
		{"    listen 443 ssl;\n", "    listen " + httpsAddr + " ssl;\n"},
		{"    listen [::]:443 ssl;\n", ""},
		{"/etc/ssl/mdm.example.com/fullchain.pem", certPath},
		{"/etc/ssl/mdm.example.com/privkey.pem", keyPath},
		{"/etc/nanomdm/scep-ca.pem", caPath},
	} {
		if n := strings.Count(conf, r.old); n != 1 {
			t.Fatalf("%s has %q %d times, want once: update this test with the file", nginxSite, r.old, n)
		}
		conf = strings.Replace(conf, r.old, r.new, 1)
	}
	if err := os.WriteFile(filepath.Join(dir, "site.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;" // workers need the test's private directories
	}
	access := filepath.Join(dir, "access.log")
	main := fmt.Sprintf(`%s
daemon off;
worker_processes 1;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log;
events { worker_connections 1024; }
http {
    log_format upstream '$upstream_addr $status';
    access_log %[3]s upstream;
    client_body_temp_path %[2]s/body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;
    include %[2]s/site.conf;
}
`, user, dir, access)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "stderr.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/usr/sbin/nginx", "-p", dir, "-c", confPath, "-e", filepath.Join(dir, "error.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting nginx: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		logf.Close()
	})
	p := &nginxProxy{url: "https://" + httpsAddr, http: "http://" + httpAddr, access: access,
		client: &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: pool, ServerName: "mdm.example.com"},
			MaxIdleConnsPerHost: 64,
		}}}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := p.client.Get(p.url + "/version")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case <-done:
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			e, _ := os.ReadFile(logf.Name())
			t.Fatalf("nginx exited at start:\n%s%s", b, e)
		default:
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx did not serve /version: %v %v\n%s", err, resp, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// upstreamCounts counts the answers of each upstream in the access log.
func (p *nginxProxy) upstreamCounts() map[string]int {
	counts := map[string]int{}
	f, err := os.Open(p.access)
	if err != nil {
		return counts
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// "$upstream_addr $status"; several addresses when nginx tried
		// the next server.
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 {
			counts[strings.Join(fields[:len(fields)-1], " ")]++
		}
	}
	return counts
}

// serverCert writes a self-signed certificate for mdm.example.com and
// 127.0.0.1 and its key into dir, returning the paths and a pool that
// trusts it.
func serverCert(t *testing.T, dir string) (certPath, keyPath string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "mdm.example.com"},
		DNSNames:     []string{"mdm.example.com"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath, pool
}

// --- instances --------------------------------------------------------------

// instances returns one server setup per storage flag set, all trusting
// one CA (devices may reach any of them).
func instances(t *testing.T, storageFlags [][]string, extra ...string) ([]*serverSetup, string) {
	t.Helper()
	dir := t.TempDir()
	ca, err := simulator.NewCA("cluster CA")
	if err != nil {
		t.Fatalf("creating CA: %v", err)
	}
	caPath := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caPath, ca.CertPEM(), 0o644); err != nil {
		t.Fatalf("writing CA: %v", err)
	}
	var setups []*serverSetup
	for i, flags := range storageFlags {
		addr := freeAddr(t)
		args := append([]string{"-listen", addr, "-ca", caPath, "-api", testAPIKey}, flags...)
		setups = append(setups, &serverSetup{t: t, bin: serverBinary(t), addr: addr, ca: ca,
			args: append(args, extra...), dir: filepath.Join(dir, fmt.Sprint(i))})
		os.Mkdir(setups[i].dir, 0o755)
	}
	return setups, caPath
}

// retryLine is what the SQL store logs (at debug level) before it retries
// a deadlock or serialization failure.
const retryLine = "retrying after transient database error"

// retries counts the retries in the logs of every run of setups.
func retries(setups []*serverSetup) (n int, sample string) {
	for _, s := range setups {
		logs, _ := filepath.Glob(filepath.Join(s.dir, "server-*.log"))
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			for _, line := range strings.Split(string(b), "\n") {
				if strings.Contains(line, retryLine) {
					n++
					if sample == "" {
						sample = line
					}
				}
			}
		}
	}
	return n, sample
}

// errorLines returns the lines of every run of setups that tell of a
// failure.
func errorLines(setups []*serverSetup) string {
	var b strings.Builder
	for _, s := range setups {
		logs, _ := filepath.Glob(filepath.Join(s.dir, "server-*.log"))
		for _, l := range logs {
			data, _ := os.ReadFile(l)
			b.WriteString(grepLines(string(data), "failed"))
		}
	}
	return b.String()
}

// statusCounter tallies device answers by status.
type statusCounter struct {
	mu sync.Mutex
	m  map[int]int
}

func (c *statusCounter) add(status int, _ error) {
	c.mu.Lock()
	if c.m == nil {
		c.m = map[int]int{}
	}
	c.m[status]++
	c.mu.Unlock()
}

func (c *statusCounter) snapshot() (map[int]int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out, total := map[int]int{}, 0
	for k, v := range c.m {
		out[k] = v
		total += v
	}
	return out, total
}

// hammer sends TokenUpdate for devs to every server at once, directly
// (not through nginx), until stop is closed: three nodes writing the same
// rows, which Galera certifies against each other and fails as deadlocks
// at commit. Every answer is counted in c.
func hammer(devs []*fleetDevice, urls []string, c *statusCounter, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	for _, u := range urls {
		for _, d := range devs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				dev := *d.dev
				dev.Transport = &simulator.Transport{URL: u + "/mdm", Client: &http.Client{Timeout: 15 * time.Second}}
				ch := *d.dev.Channel
				ch.Device = &dev
				for {
					select {
					case <-stop:
						return
					default:
					}
					err := ch.TokenUpdate(context.Background())
					c.add(simulator.StatusOf(err), err)
					// A device sends one TokenUpdate at a time; three
					// writers of one row without a pause can make one
					// lose every one of its ten attempts.
					time.Sleep(10 * time.Millisecond)
				}
			}()
		}
	}
	return &wg
}

// --- the test ----------------------------------------------------------------

// TestGalera runs three instances, each on its own node of a three-node
// MariaDB Galera cluster, behind nginx configured by docs/deploy's site
// file. Under load (devices through nginx, an operator enqueueing through
// nginx, and TokenUpdates for a few devices sent to all three instances at
// once to force write conflicts between nodes), every request is answered
// 200, the store retries the conflicts Galera reports as deadlocks, and
// every command is delivered and answered exactly once. Then, under load
// again, one Galera node is stopped and restarted and one instance is
// killed with SIGKILL and restarted: nothing is lost and no command comes
// back after its acknowledgement was accepted.
func TestGalera(t *testing.T) {
	requireBinaries(t, "/usr/sbin/nginx")
	cluster := startGalera(t)
	// Every conflict reaches the store: the nodes do not retry autocommit
	// statements themselves (their default retries them once).
	for i := range cluster.nodes {
		cluster.exec(i, "SET GLOBAL wsrep_retry_autocommit = 0")
	}
	cluster.exec(0, "CREATE DATABASE nanomdm CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")

	// Each instance on its own node. wsrep_sync_wait=1 makes every read
	// wait until the node has applied what the cluster committed before
	// it: a device's next request, on another instance, sees its last
	// answer (docs/operations-guide.md, Galera).
	var flags [][]string
	for _, n := range cluster.nodes {
		flags = append(flags, []string{"-storage", "mysql", "-storage-dsn", n.dsn + "nanomdm?wsrep_sync_wait=1",
			"-storage-options", "migrate=1"})
	}
	// Every instance sends webhook events to one receiver, through the
	// outbox in the cluster; a killed instance's claims expire after
	// the lease.
	hook := newOutboxHook(t)
	setups, caPath := instances(t, flags, "-debug", "-webhook-url", hook.url, "-webhook-lease", "5s")
	procs := make([]*proc, len(setups))
	var upstreams, direct []string
	for i, s := range setups {
		procs[i] = s.start() // one after the other: the first creates the schema
		upstreams = append(upstreams, s.addr)
		direct = append(direct, s.url())
	}
	proxy := startNginx(t, upstreams, caPath)
	checkSiteRules(t, proxy)

	const devices, perDevice, hot = 30, 5, 4
	fl := newFleetAt(t, proxy.url, setups[0].ca, proxy.client, devices)
	for i, d := range fl.devs {
		for j := 0; j < perDevice; j++ {
			if status := fl.enqueue(d, fmt.Sprintf("load-%d-%d", i, j)); status != http.StatusOK {
				t.Fatalf("enqueue through nginx: %d", status)
			}
		}
	}

	// --- load, no faults ---
	var answers, hammered statusCounter
	fl.observe(answers.add)
	cpuBefore, dbBefore := cpuOf(pids(procs)), cpuOf(cluster.mariadbdPIDs())
	enqueued := operator(fl, "live", 20*time.Millisecond)
	stopHammer := make(chan struct{})
	hw := hammer(fl.devs[:hot], direct, &hammered, stopHammer)
	start := time.Now()
	runFleet(t, fl, 3*time.Second, func() { close(stopHammer); hw.Wait(); enqueued.stop() })
	elapsed := time.Since(start)
	cpuAfter, dbAfter := cpuOf(pids(procs)), cpuOf(cluster.mariadbdPIDs())

	statuses, requests := answers.snapshot()
	hstatuses, hrequests := hammered.snapshot()
	n := fl.check(t)
	nretries, sample := retries(setups)
	total := requests + hrequests + enqueued.count() + devices*perDevice
	t.Logf("load: %d device requests %v, %d TokenUpdates to all three instances at once %v, %d enqueues; %d commands delivered exactly once; %v",
		requests, statuses, hrequests, hstatuses, enqueued.count()+devices*perDevice, n, elapsed.Round(time.Millisecond))
	t.Logf("load: %d retries of deadlocks/conflicts by the store, e.g. %s", nretries, sample)
	t.Logf("load: CPU per request: servers %.2f ms, Galera nodes %.2f ms (all three; %d requests)",
		ms(cpuAfter-cpuBefore)/float64(total), ms(dbAfter-dbBefore)/float64(total), total)
	t.Logf("load: requests per instance (nginx access log): %v", proxy.upstreamCounts())
	for status, k := range statuses {
		if status != http.StatusOK {
			t.Errorf("load without faults: %d device requests answered %d, want only 200", k, status)
		}
	}
	for status, k := range hstatuses {
		if status != http.StatusOK {
			t.Errorf("conflicting TokenUpdates: %d answered %d, want only 200 (the store retries conflicts)", k, status)
		}
	}
	if t.Failed() {
		t.Logf("errors the instances logged:\n%s", errorLines(setups))
	}
	if nretries == 0 {
		t.Errorf("no retries logged: the conflicting writes did not conflict, or the store did not retry them")
	}
	if t.Failed() {
		return
	}

	// --- faults under load ---
	var faultAnswers statusCounter
	fl.observe(faultAnswers.add)
	for i, d := range fl.devs {
		for j := 0; j < perDevice; j++ {
			if status := fl.enqueue(d, fmt.Sprintf("fault-%d-%d", i, j)); status != http.StatusOK {
				t.Fatalf("enqueue through nginx: %d", status)
			}
		}
	}
	enqueued = operator(fl, "fault-live", 30*time.Millisecond)
	runFleet(t, fl, 0, func() {
		time.Sleep(time.Second)
		t0 := time.Now()
		if err := cluster.script("stop-node", "2"); err != nil {
			t.Errorf("%v", err)
		}
		t.Logf("faults: Galera node 2 stopped (%v)", time.Since(t0).Round(time.Millisecond))
		time.Sleep(3 * time.Second)
		if status := getStatus(setups[1].url() + "/readyz"); status != http.StatusServiceUnavailable {
			t.Errorf("/readyz of the instance on the stopped node: have %d, want 503", status)
		}
		t0 = time.Now()
		if err := cluster.script("start-node", "2"); err != nil {
			t.Errorf("%v", err)
		}
		t.Logf("faults: Galera node 2 back and synced in %v, cluster size %s", time.Since(t0).Round(time.Millisecond), cluster.status(0, "wsrep_cluster_size"))
		time.Sleep(time.Second)
		procs[2].cmd.Process.Signal(syscall.SIGKILL)
		<-procs[2].done
		t.Logf("faults: instance 3 killed with SIGKILL")
		time.Sleep(500 * time.Millisecond)
		procs[2] = setups[2].start()
		t.Logf("faults: instance 3 restarted")
		time.Sleep(time.Second)
		enqueued.stop()
	})
	fstatuses, frequests := faultAnswers.snapshot()
	n = fl.check(t)
	t.Logf("faults: %d device requests %v (0 = no answer), %d live enqueues (%d unanswered); %d commands in all delivered exactly once",
		frequests, fstatuses, enqueued.count(), len(fl.maybe), n)
	for status, k := range fstatuses {
		switch status {
		case http.StatusOK, http.StatusInternalServerError, http.StatusBadGateway:
		default:
			t.Errorf("faults: %d device requests answered %d, want 200, or 500 (database down) or 502 (instance down)", k, status)
		}
	}
	for i, s := range setups {
		if status := getStatus(s.url() + "/readyz"); status != http.StatusOK {
			t.Errorf("/readyz of instance %d after the faults: have %d, want 200", i+1, status)
		}
	}
	if size := cluster.status(0, "wsrep_cluster_size"); size != "3" {
		t.Errorf("cluster size after the faults: %s, want 3", size)
	}

	// Webhook events all delivered: an acknowledge event for every
	// acknowledgement an instance accepted, in both runs, in order per
	// device (at least once: duplicates are counted, not refused).
	accepted := fl.accepted()
	var missing []string
	t0 := time.Now()
	for deadline := t0.Add(60 * time.Second); ; {
		got := hook.acknowledged()
		missing = missing[:0]
		for k := range accepted {
			if !got[k] {
				missing = append(missing, k)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("webhook: an acknowledge event for %d of %d accepted acknowledgements, the last %v after the load", len(accepted)-len(missing), len(accepted), time.Since(t0).Round(time.Millisecond))
	// The hot devices sent to all three instances at once: their events
	// have no order to keep.
	var hotIDs []string
	for _, d := range fl.devs[:hot] {
		hotIDs = append(hotIDs, d.dev.UDID())
	}
	hook.check(t, false, hotIDs...)
	if len(missing) > 0 {
		sort.Strings(missing)
		t.Errorf("webhook: no acknowledge event for %d accepted acknowledgements, e.g. %v", len(missing), missing[:min(5, len(missing))])
	}
	for i, p := range procs {
		if strings.Contains(p.logs(), "panic") {
			t.Errorf("instance %d logged a panic", i+1)
		}
	}
}

// checkSiteRules checks what the nginx site promises besides proxying:
// plain HTTP redirects to HTTPS, nothing outside the server's paths is
// served, and a client's own X-Client-Cert header does not get through.
func checkSiteRules(t *testing.T, p *nginxProxy) {
	t.Helper()
	noRedirect := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	resp, err := noRedirect.Get(p.http + "/mdm")
	if err != nil {
		t.Fatalf("plain HTTP: %v", err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusMovedPermanently || !strings.HasPrefix(loc, "https://") {
		t.Errorf("plain HTTP: have %d to %q, want 301 to https://", resp.StatusCode, loc)
	}
	if status := statusVia(p.client, p.url+"/debug/pprof/"); status != http.StatusNotFound {
		t.Errorf("a path outside the server's: have %d, want 404", status)
	}
	if status := statusVia(p.client, p.url+"/v1/enrollments"); status != http.StatusUnauthorized {
		t.Errorf("the API from 127.0.0.1 without a key: have %d, want 401 from nanomdm", status)
	}
}

func statusVia(c *http.Client, url string) int {
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func pids(procs []*proc) []int {
	var out []int
	for _, p := range procs {
		out = append(out, p.cmd.Process.Pid)
	}
	return out
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// liveEnqueuer is an operator enqueueing a command for a random device
// every interval until stop.
type liveEnqueuer struct {
	n    atomic.Int64
	quit chan struct{}
	done chan struct{}
}

func operator(fl *fleet, prefix string, every time.Duration) *liveEnqueuer {
	e := &liveEnqueuer{quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(e.done)
		for i := 0; ; i++ {
			select {
			case <-e.quit:
				return
			case <-time.After(every):
			}
			fl.enqueue(fl.devs[i%len(fl.devs)], fmt.Sprintf("%s-%d", prefix, i))
			e.n.Add(1)
		}
	}()
	return e
}

func (e *liveEnqueuer) stop() {
	select {
	case <-e.quit:
	default:
		close(e.quit)
	}
	<-e.done
}

func (e *liveEnqueuer) count() int { return int(e.n.Load()) }

// runFleet runs the fleet while during runs (or for d when during only
// stops things), then lets every device settle, failing t after two
// minutes.
func runFleet(t *testing.T, fl *fleet, d time.Duration, during func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { fl.run(ctx, 100*time.Millisecond, stop); close(done) }()
	time.Sleep(d)
	during()
	close(stop)
	<-done
	if ctx.Err() != nil {
		t.Errorf("devices did not settle within the time limit")
	}
}
