package main

// Memory under hostile and heavy load, measured on the built server
// process (see process_test.go): its peak resident memory (VmHWM) is read
// from /proc and reported in the test log; docs/security.md quotes the
// figures.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/cryptoutil"
	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/mdm/simulator"
)

const mib = 1 << 20

// procMemory returns the resident memory of process pid now (VmRSS) and
// at its peak (VmHWM), in bytes.
func procMemory(t *testing.T, pid int) (rss, peak int64) {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("reading process status: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			t.Fatalf("parsing %s %q: %v", name, value, err)
		}
		if name == "VmRSS" {
			rss = kb << 10
		} else {
			peak = kb << 10
		}
	}
	if rss == 0 || peak == 0 {
		t.Fatalf("no VmRSS or VmHWM in /proc/%d/status", pid)
	}
	return rss, peak
}

// TestMemoryStrangers sends 200 concurrent 9.5 MB bodies to /mdm without
// a usable identity (half with no signature, half signed by a CA the
// server does not trust). Each is answered 400 (or 503) without its body
// being read, so the server's peak resident memory stays far below what
// buffering them would take (1.9 GB).
func TestMemoryStrangers(t *testing.T) {
	const (
		requests = 200
		size     = 9_500_000
		bound    = 128 * 1000 * 1000
	)
	setup := newServerSetup(t, []string{"-storage", "inmem"})
	p := setup.start()
	_, idle := procMemory(t, p.cmd.Process.Pid)

	body := bytes.Repeat([]byte("x"), size)
	stranger, err := simulator.NewCA("stranger CA")
	if err != nil {
		t.Fatalf("creating CA: %v", err)
	}
	id, err := stranger.Issue("stranger")
	if err != nil {
		t.Fatalf("issuing identity: %v", err)
	}
	sig, err := cryptoutil.SignMdmSignature(body, id.Cert, id.Key)
	if err != nil {
		t.Fatalf("signing: %v", err)
	}

	var wg sync.WaitGroup
	statuses := make([]int, requests)
	errs := make([]error, requests)
	for i := range requests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			head := fmt.Sprintf("POST /mdm HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-apple-aspen-mdm\r\nContent-Length: %d\r\n", setup.addr, size)
			if i%2 == 1 {
				head += "Mdm-Signature: " + sig + "\r\n"
			}
			statuses[i], errs[i] = sendWhileReading(setup.addr, head+"\r\n", body)
		}()
	}
	wg.Wait()
	count := map[int]int{}
	for i := range requests {
		switch {
		case errs[i] != nil:
			t.Errorf("request %d: no answer: %v", i, errs[i])
		case statuses[i] != http.StatusBadRequest && statuses[i] != http.StatusServiceUnavailable:
			t.Errorf("request %d: have status %d, want 400 or 503", i, statuses[i])
		}
		count[statuses[i]]++
	}
	_, peak := procMemory(t, p.cmd.Process.Pid)
	t.Logf("%d concurrent %.1f MB unauthenticated requests: statuses %v; server peak RSS %.1f MB (idle %.1f MB), bound %d MB",
		requests, float64(size)/1e6, count, float64(peak)/1e6, float64(idle)/1e6, bound/1000/1000)
	if peak > bound {
		t.Errorf("server peak RSS %.1f MB, want at most %d MB", float64(peak)/1e6, bound/1000/1000)
	}
}

// TestMemoryEnrolledReports has 50 enrolled devices send 5 MB command
// reports at once with a body budget of 64 MiB (the default). Every report is stored:
// those answered 503 come back after Retry-After, as a device does. The
// server's peak resident memory stays within the budget plus 64 MB, and
// once the burst is over its heap and resident memory go back to their
// idle sizes.
func TestMemoryEnrolledReports(t *testing.T) {
	const (
		devices = 50
		size    = 5_000_000
		budget  = 64 * mib
		bound   = budget + 64*1000*1000
	)
	// The identity comes in a TLS proxy's header: signing 250 MB as
	// devices do (Mdm-Signature) would keep the test busy for a minute
	// under the race detector, and checking a signature costs the server
	// time, not memory (TestBodyReadOnce in http/mdm).
	const certHeader = "X-Client-Cert"
	setup := newServerSetup(t, fileBackend.flags(t), "-body-budget", strconv.Itoa(budget), "-cert-header", certHeader)
	p := setup.start()
	ctx := context.Background()
	// Reports are sent with Expect: 100-continue, so that a 503 given
	// before the body is read reaches the client instead of a failed
	// write.
	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{ExpectContinueTimeout: 10 * time.Second}}
	defer client.CloseIdleConnections()
	tr := &simulator.Transport{URL: setup.url() + "/mdm", Client: client, CertHeader: certHeader}
	devs := make([]*simulator.Device, devices)
	ids := make([]string, devices)
	for i := range devs {
		id, err := setup.ca.Issue(fmt.Sprintf("memory device %d", i))
		if err != nil {
			t.Fatalf("issuing identity: %v", err)
		}
		devs[i] = simulator.NewDevice(tr, id)
		if err := devs[i].Enroll(ctx); err != nil {
			t.Fatalf("enrolling device %d: %v", i, err)
		}
		ids[i] = devs[i].UDID()
	}
	const uuid = "memory-report"
	cmd, err := mdm.NewCommand(uuid, "DeviceInformation", nil)
	if err != nil {
		t.Fatal(err)
	}
	apiRequest(t, client, http.MethodPut, setup.url()+"/v1/enqueue/"+strings.Join(ids, ",")+"?nopush=1", cmd.Raw, nil)
	_, idle := procMemory(t, p.cmd.Process.Pid)
	idleHeap := heapObjects(t, client, setup.url())

	// Each device fetches the command, then all report at once.
	var refused atomic.Int64
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	padding := strings.Repeat("r", size)
	for i, dev := range devs {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			got, err := dev.Channel.Idle(ctx)
			if err != nil || got == nil || got.CommandUUID != uuid {
				ready.Done()
				t.Errorf("device %d: have command %v (%v), want %s", i, got, err, uuid)
				return
			}
			req, err := reportRequest(ctx, tr, dev, uuid, padding)
			if err != nil {
				ready.Done()
				t.Errorf("device %d: %v", i, err)
				return
			}
			ready.Done()
			<-start
			for attempt := 1; ; attempt++ {
				status, retryAfter, err := sendOnce(client, req)
				if err != nil {
					t.Errorf("device %d: %v", i, err)
					return
				}
				if status == http.StatusOK {
					return
				}
				if status != http.StatusServiceUnavailable || retryAfter <= 0 || attempt == 30 {
					t.Errorf("device %d attempt %d: have status %d (Retry-After %v), want 200, or 503 with Retry-After", i, attempt, status, retryAfter)
					return
				}
				refused.Add(1)
				time.Sleep(retryAfter)
			}
		}()
	}
	ready.Wait()
	began := time.Now()
	close(start)
	done.Wait()
	took := time.Since(began)
	_, peak := procMemory(t, p.cmd.Process.Pid)
	t.Logf("%d devices, %.0f MB reports, budget %d MiB: all sent in %v with %d answers 503 (retried); server peak RSS %.1f MB (idle %.1f MB), bound %.1f MB",
		devices, float64(size)/1e6, budget/mib, took.Round(time.Millisecond), refused.Load(), float64(peak)/1e6, float64(idle)/1e6, float64(bound)/1e6)
	if peak > bound {
		t.Errorf("server peak RSS %.1f MB, want at most %.1f MB", float64(peak)/1e6, float64(bound)/1e6)
	}

	// Memory goes back: once nothing is in flight the budget collects
	// and returns the freed memory to the system, and the heap and the
	// resident memory are their idle sizes again. The collection runs as
	// the last body is given back, so the readings are polled, with a
	// bound. (http's TestBodyBudgetHeapGoesBack shows the collection
	// itself, deterministically.)
	back := func() (heap, rss int64, ok bool) {
		heap = heapObjects(t, client, setup.url())
		rss, _ = procMemory(t, p.cmd.Process.Pid)
		return heap, rss, heap <= idleHeap+heapTolerance && rss <= idle+rssTolerance
	}
	heap, rss, ok := back()
	for deadline := time.Now().Add(10 * time.Second); !ok && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		heap, rss, ok = back()
	}
	t.Logf("after the burst: heap objects %.1f MB (idle %.1f MB), RSS %.1f MB (idle %.1f MB)",
		float64(heap)/1e6, float64(idleHeap)/1e6, float64(rss)/1e6, float64(idle)/1e6)
	if !ok {
		t.Errorf("after the burst: heap objects %.1f MB, RSS %.1f MB; want at most the idle %.1f MB + %.1f MB, %.1f MB + %.1f MB",
			float64(heap)/1e6, float64(rss)/1e6, float64(idleHeap)/1e6, float64(heapTolerance)/1e6, float64(idle)/1e6, float64(rssTolerance)/1e6)
	}

	if t.Failed() {
		t.Logf("server log:\n%s", p.logs())
	}
	var results struct {
		Results []struct{ ID, Status string }
	}
	apiRequest(t, client, http.MethodGet, setup.url()+"/v1/commands/"+uuid+"/results?status_only=1&limit=1000", nil, &results)
	stored := map[string]string{}
	for _, r := range results.Results {
		stored[r.ID] = r.Status
	}
	for i, id := range ids {
		if stored[id] != mdm.StatusAcknowledged {
			t.Errorf("device %d: stored result %q, want %s", i, stored[id], mdm.StatusAcknowledged)
		}
	}
}

// heapTolerance and rssTolerance are how far above their idle sizes the
// server's heap and resident memory may be once a burst is over: less
// than one body of the burst, and two (the runtime keeps some memory of
// its own, such as goroutine stacks).
const (
	heapTolerance = 2 * mib
	rssTolerance  = 10 * mib
)

// heapObjects reads the server's heap objects bytes (live and not yet
// collected; the Go collector's go_memstats_heap_alloc_bytes, a
// runtime/metrics reading) from its /metrics.
func heapObjects(t *testing.T, client *http.Client, url string) int64 {
	t.Helper()
	const name = "go_memstats_heap_alloc_bytes "
	req, err := http.NewRequest(http.MethodGet, url+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("nanomdm", testAPIKey)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("reading metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("parsing %s%q: %v", name, v, err)
			}
			return int64(f)
		}
	}
	t.Fatalf("no %s in /metrics (status %d)", name, resp.StatusCode)
	return 0
}

// sendWhileReading sends head and body on a new connection and reads the
// answer at the same time, as a client must to see an answer given
// before its body was read: the server answers and closes, and writing
// the rest of the body then fails, which is not an error here.
func sendWhileReading(addr, head string, body []byte) (int, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, err
	}
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		if _, err := io.WriteString(conn, head); err == nil {
			conn.Write(body)
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	conn.Close()
	<-wrote
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// reportRequest is an Acknowledged report of device dev for command
// uuid carrying padding, sent with Expect: 100-continue. The body is
// streamed from its parts: building 50 bodies of megabytes would keep
// the test's CPUs busy for many seconds under the race detector.
func reportRequest(ctx context.Context, tr *simulator.Transport, dev *simulator.Device, uuid, padding string) (*http.Request, error) {
	head := fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>
<plist version="1.0"><dict>
<key>UDID</key><string>%s</string>
<key>CommandUUID</key><string>%s</string>
<key>Status</key><string>Acknowledged</string>
<key>RequestType</key><string>DeviceInformation</string>
<key>Padding</key><string>`, dev.UDID(), uuid)
	const tail = "</string>\n</dict></plist>\n"
	req, err := tr.NewRequest(ctx, dev.Identity, nil, false)
	if err != nil {
		return nil, err
	}
	req.GetBody = func() (io.ReadCloser, error) {
		return io.NopCloser(io.MultiReader(strings.NewReader(head), strings.NewReader(padding), strings.NewReader(tail))), nil
	}
	req.Body, _ = req.GetBody()
	req.ContentLength = int64(len(head) + len(padding) + len(tail))
	req.Header.Set("Expect", "100-continue")
	return req, nil
}

// sendOnce sends a copy of req and returns the status and Retry-After.
func sendOnce(client *http.Client, req *http.Request) (int, time.Duration, error) {
	r := req.Clone(req.Context())
	body, err := req.GetBody()
	if err != nil {
		return 0, 0, err
	}
	r.Body = body
	resp, err := client.Do(r)
	if err != nil {
		return 0, 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	secs, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	return resp.StatusCode, time.Duration(secs) * time.Second, nil
}

// apiRequest sends an authenticated API request, fails the test unless
// it is answered 200, and decodes the JSON answer into v (when not nil).
func apiRequest(t *testing.T, client *http.Client, method, url string, body []byte, v interface{}) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("nanomdm", testAPIKey)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: status %d: %s", method, url, resp.StatusCode, b)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("decoding answer of %s %s: %v", method, url, err)
		}
	}
}
