package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nanomdm/nanomdm/certverify"
	httpmdm "github.com/nanomdm/nanomdm/http/mdm"
	"github.com/nanomdm/nanomdm/service/nanomdm"
	"github.com/nanomdm/nanomdm/storage/inmem"
)

// newCADir writes a throwaway CA with mdmsim ca and returns its directory.
func newCADir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "dev")
	if err := runCA([]string{"ca", "-out", dir}, io.Discard, io.Discard); err != nil {
		t.Fatalf("mdmsim ca: %v", err)
	}
	return dir
}

// newServer serves the real MDM handlers on in-memory storage for the CA
// in caDir; with separate, check-ins go to /checkin only, as nanomdm
// -checkin serves them.
func newServer(t *testing.T, caDir string, separate bool) string {
	t.Helper()
	caPEM, err := os.ReadFile(filepath.Join(caDir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := certverify.NewPoolVerifier(caPEM, nil)
	if err != nil {
		t.Fatal(err)
	}
	svc := nanomdm.New(inmem.New())
	mux := http.NewServeMux()
	if separate {
		mux.Handle("/mdm", httpmdm.IdentityMiddleware(httpmdm.CommandAndReportResultsHandler(svc), verifier))
		mux.Handle("/checkin", httpmdm.IdentityMiddleware(httpmdm.CheckinHandler(svc), verifier))
	} else {
		mux.Handle("/mdm", httpmdm.IdentityMiddleware(httpmdm.CheckinAndCommandHandler(svc), verifier))
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestDeviceCheckinURL enrolls through a separate check-in endpoint with
// -checkin, and checks that without it the 400 says where the reason is.
func TestDeviceCheckinURL(t *testing.T) {
	caDir := newCADir(t)
	url := newServer(t, caDir, true)
	var out bytes.Buffer
	err := runDevice(context.Background(), []string{"device", "-url", url + "/mdm", "-checkin", url + "/checkin",
		"-ca", caDir, "-udid", "5555-6666"}, &out, io.Discard)
	if err != nil || !strings.Contains(out.String(), "enrolled 5555-6666") {
		t.Errorf("device with -checkin: %v, printed %q; want it enrolled", err, out.String())
	}
	err = runDevice(context.Background(), []string{"device", "-url", url + "/mdm", "-ca", caDir, "-udid", "7777-8888"},
		io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), "the server's log says why") {
		t.Errorf("check-in sent to a commands-only /mdm: error %v, want a 400 that points at the server's log", err)
	}
}

// TestDevicePollSaysNothingQueued checks that -poll prints a line while
// nothing is queued, and stops when its context ends.
func TestDevicePollSaysNothingQueued(t *testing.T) {
	caDir := newCADir(t)
	url := newServer(t, caDir, false)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- runDevice(ctx, []string{"device", "-url", url + "/mdm", "-ca", caDir, "-udid", "9999-0000", "-poll", "10ms"}, pw, io.Discard)
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if strings.Contains(sc.Text(), "9999-0000: no commands queued; polling every 10ms") {
			break
		}
	}
	cancel()
	go io.Copy(io.Discard, pr) // let the device finish writing
	if err := <-done; err != nil {
		t.Errorf("device -poll: %v", err)
	}
	if len(lines) == 0 || !strings.Contains(lines[len(lines)-1], "polling every") {
		t.Errorf("device -poll printed %q, want a line saying nothing is queued", lines)
	}
}

// TestLoadFleetDefault checks that the fleet file is not kept in the
// working directory unless asked.
func TestLoadFleetDefault(t *testing.T) {
	c, err := parseLoadFlags([]string{"load", "-api-key", "k"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if !filepath.IsAbs(c.fleetPath) || strings.HasPrefix(c.fleetPath, wd+string(filepath.Separator)) {
		t.Errorf("default -fleet %q, want an absolute path outside the working directory %s", c.fleetPath, wd)
	}
}
