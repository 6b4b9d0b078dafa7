package docs_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/log/logtest"
	"github.com/nanomdm/nanomdm/mdm/simulator"
)

// runningServer is the built nanomdm binary listening on a free port.
type runningServer struct {
	url  string
	logs *logtest.Buffer
}

// freePort returns a loopback address nobody listens on right now.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startNanoMDM starts the nanomdm binary with args plus -listen on a free
// port, waits until /version answers, and stops it (SIGTERM, then kill)
// when the test ends.
func startNanoMDM(t *testing.T, bin string, args ...string) *runningServer {
	t.Helper()
	s, err := tryStartNanoMDM(t, bin, args...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// tryStartNanoMDM is startNanoMDM returning the error of a server that
// exits at start (with its output) instead of failing the test. A port
// taken between choosing and binding it is retried on another.
func tryStartNanoMDM(t *testing.T, bin string, args ...string) (*runningServer, error) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		s, err := startOnce(t, bin, freePort(t), args...)
		if err == nil || attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			return s, err
		}
	}
}

func startOnce(t *testing.T, bin, addr string, args ...string) (*runningServer, error) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"-listen", addr}, args...)...)
	cmd.Env = cleanEnv()
	logs := &logtest.Buffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting nanomdm: %v", err)
	}
	var exitErr error
	exited := make(chan struct{})
	go func() { exitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
			t.Errorf("nanomdm did not stop within 10 s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("nanomdm log:\n%s", logs.String())
		}
	})
	s := &runningServer{url: "http://" + addr, logs: logs}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-exited:
			return nil, fmt.Errorf("nanomdm exited at start: %v\n%s", exitErr, logs.String())
		default:
		}
		resp, err := http.Get(s.url + "/version")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("nanomdm did not answer /version within 30 s\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// do sends one request and returns the status and body.
func do(t *testing.T, method, url string, body []byte, user, pass string, header map[string]string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatalf("new request %s %s: %v", method, url, err)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}

// runTool runs a built command and returns its stdout; a non-zero exit
// fails the test.
func runTool(t *testing.T, bin string, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Env = cleanEnv()
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout: %s\nstderr: %s", filepath.Base(bin), strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// fillPath puts example values into a documented path's parameters.
func fillPath(p string) string {
	return pathParam.ReplaceAllStringFunc(p, func(param string) string {
		switch param {
		case "{ids}":
			return "probe-device-1,probe-device-2"
		}
		return "probe"
	})
}

// TestOpenAPIProbe runs the server with every route on and sends each
// documented operation a few requests (no credentials, a body that is no
// plist, an empty body, a body over the size limit, and, for each path, a
// method it does not document): every status the server answers must be
// listed for that operation. Only the device identity, APNs, Apple and the
// upstreams stay out of reach, so the statuses that need them are checked
// by requiredStatus in TestOpenAPIRoutes.
func TestOpenAPIProbe(t *testing.T) {
	dir := t.TempDir()
	ca, err := simulator.NewCA("probe CA")
	if err != nil {
		t.Fatalf("creating CA: %v", err)
	}
	caPath := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caPath, ca.CertPEM(), 0o644); err != nil {
		t.Fatalf("writing CA: %v", err)
	}
	const key = "probe-key"
	const limit = 4096
	args := []string{"-ca", caPath, "-api", key, "-storage-dsn", filepath.Join(dir, "db"),
		"-checkin", "-migration", "-ui", "-escrowkeyunlock-url", "http://" + freePort(t) + "/unlock",
		"-max-body-bytes", fmt.Sprint(limit),
		"-public-url", "https://mdm.example.com", "-enroll", "-enroll-topic", "com.apple.mgmt.External.probe"}
	args = append(args, scepCAFlags(t, dir)...)
	bin := commandBinary(t, "nanomdm")
	// The auth proxy needs a backend that finds enrollments by certificate
	// hash; while the file backend cannot, its operations are left out.
	srv, err := tryStartNanoMDM(t, bin, append(args, "-auth-proxy-url", "http://"+freePort(t)+"/")...)
	authProxy := err == nil
	if !authProxy {
		t.Logf("probing without /authproxy/: %v", err)
		srv = startNanoMDM(t, bin, args...)
	}

	ops, _ := loadOpenAPI(t)
	notPlist := []byte("this is not a plist")
	tooLarge := bytes.Repeat([]byte("x"), 2*limit)
	for _, docOps := range ops {
		if !authProxy && strings.HasPrefix(docOps[0].path, "/authproxy/") {
			continue
		}
		for _, op := range docOps {
			url := srv.url + fillPath(op.path)
			t.Run(op.method+" "+op.path, func(t *testing.T) {
				seen := map[int]string{}
				probe := func(what string, body []byte, auth bool, header map[string]string) {
					user, pass := "", ""
					if auth {
						user, pass = "nanomdm", key
					}
					status, answer := do(t, op.method, url, body, user, pass, header)
					seen[status] = what
					if !op.codes[fmt.Sprint(status)] {
						t.Errorf("%s: answered %d (%q), which docs/openapi.yaml:%d does not list (it lists %v)",
							what, status, strings.TrimSpace(answer), op.line, keysOfBools(op.codes))
					}
				}
				probe("no credentials", notPlist, false, nil)
				if op.basicAuth {
					probe("wrong password", notPlist, false, map[string]string{"Authorization": "Basic bmFub21kbTp3cm9uZw=="})
				}
				probe("not a plist", notPlist, true, nil)
				probe("empty body", nil, true, nil)
				probe("body over -max-body-bytes", tooLarge, true, nil)
				probe("check-in content type", notPlist, true, map[string]string{"Content-Type": "application/x-apple-aspen-mdm-checkin"})
				if op.basicAuth && !op.codes["401"] {
					t.Errorf("Basic-auth operation does not list 401")
				}
				if op.basicAuth {
					if _, ok := seen[http.StatusUnauthorized]; !ok {
						t.Errorf("no probe without credentials was answered 401: %v", seen)
					}
				}
				if op.device {
					if _, ok := seen[http.StatusUnauthorized]; ok {
						t.Errorf("a device endpoint answered 401")
					}
				}
				t.Logf("answers: %v", seen)
			})
		}
		// A method the path does not document: 405 where the route
		// restricts methods, and then every operation lists 405.
		t.Run("undocumented method "+docOps[0].path, func(t *testing.T) {
			documented := map[string]bool{}
			for _, op := range docOps {
				documented[op.method] = true
			}
			m := http.MethodPatch
			if documented[m] {
				t.Skipf("every method is documented")
			}
			status, _ := do(t, m, srv.url+fillPath(docOps[0].path), notPlist, "nanomdm", key, nil)
			if status == http.StatusMethodNotAllowed {
				for _, op := range docOps {
					if !op.codes["405"] {
						t.Errorf("%s answered 405, docs/openapi.yaml:%d (%s) does not list it", m, op.line, op.method)
					}
				}
			}
		})
	}

	// Answers that need a little state.
	for _, tc := range []struct {
		method, path string
		body         []byte
		want         int
	}{
		{http.MethodGet, "/v1/pushcert?topic=com.apple.mgmt.External.none", nil, http.StatusNotFound},
		{http.MethodGet, "/v1/pushcert", nil, http.StatusOK},
		{http.MethodPut, "/v1/pushcert", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), http.StatusBadRequest},
		{http.MethodPut, "/v1/enqueue/no-such-device", cmdrOutput(t, "-u", "probe-uuid-1", "ProfileList"), http.StatusInternalServerError},
		{http.MethodGet, "/v1/push/no-such-device", nil, http.StatusInternalServerError},
		{http.MethodPost, "/v1/escrowkeyunlock", []byte("topic=com.apple.mgmt.External.none"), http.StatusBadRequest},
	} {
		header := map[string]string{}
		if tc.path == "/v1/escrowkeyunlock" {
			header["Content-Type"] = "application/x-www-form-urlencoded"
		}
		status, answer := do(t, tc.method, srv.url+tc.path, tc.body, "nanomdm", key, header)
		if status != tc.want {
			t.Errorf("%s %s answered %d %q, want %d", tc.method, tc.path, status, answer, tc.want)
		}
		path, _, _ := strings.Cut(tc.path, "?")
		op := findOp(ops, tc.method, path)
		if op == nil {
			t.Errorf("%s %s is not documented in docs/openapi.yaml", tc.method, path)
		} else if !op.codes[fmt.Sprint(status)] {
			t.Errorf("%s %s answered %d, which docs/openapi.yaml:%d does not list", tc.method, tc.path, status, op.line)
		}
	}
}

// cmdrOutput returns what tools/cmdr.py prints for args.
func cmdrOutput(t *testing.T, args ...string) []byte {
	t.Helper()
	code, out, stderr := runCmdr(t, nil, args...)
	if code != 0 {
		t.Fatalf("cmdr.py %v exited %d: %s", args, code, stderr)
	}
	return out
}

// findOp returns the documented operation that serves method and a
// concrete path, or nil.
func findOp(ops map[string][]*documentedOp, method, path string) *documentedOp {
	for _, docOps := range ops {
		for _, op := range docOps {
			parts := pathParam.Split(op.path, -1)
			for i := range parts {
				parts[i] = regexp.QuoteMeta(parts[i])
			}
			re := "^" + strings.Join(parts, "[^/]+") + "$"
			if op.method == method && regexp.MustCompile(re).MatchString(path) {
				return op
			}
		}
	}
	return nil
}

func keysOfBools(m map[string]bool) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// scepCAFlags writes an RSA CA to dir and returns the flags that run the
// embedded SCEP server with it.
func scepCAFlags(t *testing.T, dir string) []string {
	t.Helper()
	ca, err := simulator.NewRSACA("probe SCEP CA")
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath := filepath.Join(dir, "scep-ca.pem"), filepath.Join(dir, "scep-ca.key")
	if err := ca.WriteFiles(certPath, keyPath); err != nil {
		t.Fatal(err)
	}
	return []string{"-scep-ca-cert", certPath, "-scep-ca-key", keyPath}
}
