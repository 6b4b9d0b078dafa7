package main

// The server as a process of its own, built once per test run without
// the race detector (so that its memory and speed are the real ones):
// the memory tests and the fault tests (build tag faults) run it.

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/mdm/simulator"
)

var buildOnce struct {
	sync.Once
	dir, bin string
	err      error
}

// serverBinary builds cmd/nanomdm once per test run.
func serverBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildOnce.dir, buildOnce.err = os.MkdirTemp("", "nanomdm-bin-")
		if buildOnce.err != nil {
			return
		}
		buildOnce.bin = filepath.Join(buildOnce.dir, "nanomdm")
		out, err := exec.Command("go", "build", "-o", buildOnce.bin, ".").CombinedOutput()
		if err != nil {
			buildOnce.err = fmt.Errorf("building nanomdm: %v\n%s", err, out)
		}
	})
	if buildOnce.err != nil {
		t.Fatal(buildOnce.err)
	}
	return buildOnce.bin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildOnce.dir != "" {
		os.RemoveAll(buildOnce.dir)
	}
	os.Exit(code)
}

// proc is one run of the server binary.
type proc struct {
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
	err  error
}

// serverSetup is what every start of one server shares: address, CA and
// flags, so a restart comes back on the same storage.
type serverSetup struct {
	t    *testing.T
	bin  string
	addr string
	ca   *simulator.CA
	args []string
	dir  string
	runs int
}

func newServerSetup(t *testing.T, storageFlags []string, extra ...string) *serverSetup {
	t.Helper()
	dir := t.TempDir()
	ca, err := simulator.NewCA("faults CA")
	if err != nil {
		t.Fatalf("creating CA: %v", err)
	}
	caPath := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caPath, ca.CertPEM(), 0o644); err != nil {
		t.Fatalf("writing CA: %v", err)
	}
	addr := freeAddr(t)
	args := append([]string{"-listen", addr, "-ca", caPath, "-api", testAPIKey}, storageFlags...)
	return &serverSetup{t: t, bin: serverBinary(t), addr: addr, ca: ca, args: append(args, extra...), dir: dir}
}

func (s *serverSetup) url() string { return "http://" + s.addr }

// start runs the server and waits until it answers /version.
func (s *serverSetup) start() *proc {
	t := s.t
	t.Helper()
	s.runs++
	logf, err := os.Create(filepath.Join(s.dir, fmt.Sprintf("server-%d.log", s.runs)))
	if err != nil {
		t.Fatalf("creating log: %v", err)
	}
	cmd := exec.Command(s.bin, s.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = cleanServerEnv()
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting server: %v", err)
	}
	p := &proc{cmd: cmd, log: logf, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.kill() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(s.url() + "/version")
		if err == nil {
			resp.Body.Close()
			return p
		}
		select {
		case <-p.done:
			t.Fatalf("server exited at start: %v\n%s", p.err, p.logs())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not start: %v\n%s", err, p.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func cleanServerEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NANOMDM_") {
			env = append(env, kv)
		}
	}
	return env
}

func (p *proc) logs() string {
	b, _ := os.ReadFile(p.log.Name())
	return string(b)
}

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL (if still running) and waits for the exit.
func (p *proc) kill() {
	if p.alive() {
		p.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-p.done
	p.log.Close()
}
