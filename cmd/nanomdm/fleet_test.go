package main

// Simulated devices under load, for the tests that run the server as a
// process (faults_test.go, cluster_test.go): each device retries a report
// until it is answered 200, as Apple devices do, and the fleet checks that
// every command was delivered and answered exactly once.

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/mdm/simulator"
)

// fleetDevice is a simulated device that behaves as Apple devices do on
// failure: a report that was not answered 200 is sent again until it is,
// so a result is never lost on the device side. It records every command
// it received and every acknowledgement the server accepted.
type fleetDevice struct {
	dev *simulator.Device

	mu       sync.Mutex
	pending  *simulator.Report
	received map[string]int  // command UUID: times received
	acked    map[string]bool // command UUID: acknowledgement accepted
	late     []string        // commands received again after their ack was accepted
	empty    bool            // the last answer to a report was empty
}

// step sends the pending report (or Idle) once. It returns the answer's
// status, 0 for a transport error, and the error.
func (f *fleetDevice) step(ctx context.Context) (int, error) {
	f.mu.Lock()
	r := simulator.Report{Status: mdm.StatusIdle}
	if f.pending != nil {
		r = *f.pending
	}
	f.mu.Unlock()
	cmd, err := f.dev.Channel.Send(ctx, r)
	if err != nil {
		return simulator.StatusOf(err), err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pending = nil
	if r.Status == mdm.StatusAcknowledged {
		f.acked[r.CommandUUID] = true
	}
	f.empty = cmd == nil
	if cmd != nil {
		f.received[cmd.CommandUUID]++
		if f.acked[cmd.CommandUUID] {
			f.late = append(f.late, cmd.CommandUUID)
		}
		ack := simulator.Acknowledge(cmd)
		f.pending = &ack
	}
	return http.StatusOK, nil
}

// settled reports whether the device has nothing to send and the server
// had nothing more for it, with every command in want acknowledged.
func (f *fleetDevice) settled(want []string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pending != nil || !f.empty {
		return false
	}
	for _, u := range want {
		if !f.acked[u] {
			return false
		}
	}
	return true
}

// fleet is the devices of one test and the answers they got.
type fleet struct {
	t      *testing.T
	url    string // the server, or the load balancer in front of servers
	client *http.Client
	devs   []*fleetDevice

	mu       sync.Mutex
	want     map[*fleetDevice][]string // commands each device must end with acknowledged
	maybe    map[string]bool           // commands whose enqueue got no clear answer
	observer func(status int, err error)
}

// newFleetAt enrolls n devices with identities from ca at the server
// (or load balancer) at url, all sending with client.
func newFleetAt(t *testing.T, url string, ca *simulator.CA, client *http.Client, n int) *fleet {
	t.Helper()
	fl := &fleet{t: t, url: url, client: client, want: map[*fleetDevice][]string{}, maybe: map[string]bool{}}
	tr := &simulator.Transport{URL: url + "/mdm", Client: client}
	for i := 0; i < n; i++ {
		id, err := ca.Issue(fmt.Sprintf("fleet %d", i))
		if err != nil {
			t.Fatalf("issuing identity: %v", err)
		}
		d := simulator.NewDevice(tr, id)
		if err := d.Enroll(context.Background()); err != nil {
			t.Fatalf("enrolling device %d: %v", i, err)
		}
		fl.devs = append(fl.devs, &fleetDevice{dev: d, received: map[string]int{}, acked: map[string]bool{}})
	}
	return fl
}

// enqueue queues a command for one device and reports the status (0 for
// no answer). A 200 makes the command one the device must receive; no
// clear answer makes it one it may receive.
func (fl *fleet) enqueue(d *fleetDevice, uuid string) int {
	cmd, err := mdm.NewCommand(uuid, "ProfileList", nil)
	if err != nil {
		fl.t.Errorf("building command: %v", err)
		return 0
	}
	req, err := http.NewRequest(http.MethodPut, fl.url+"/v1/enqueue/"+d.dev.UDID()+"?nopush=1", strings.NewReader(string(cmd.Raw)))
	if err != nil {
		fl.t.Errorf("building request: %v", err)
		return 0
	}
	req.SetBasicAuth("nanomdm", testAPIKey)
	status := 0
	resp, err := fl.client.Do(req)
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		status = resp.StatusCode
	}
	fl.mu.Lock()
	defer fl.mu.Unlock()
	switch status {
	case http.StatusOK:
		fl.want[d] = append(fl.want[d], uuid)
	case 0:
		fl.maybe[uuid] = true
	}
	return status
}

// run keeps every device stepping, with a pause between steps, until ctx
// is done or every device settled after stop is closed.
func (fl *fleet) run(ctx context.Context, pause time.Duration, stop <-chan struct{}) {
	var wg sync.WaitGroup
	for _, d := range fl.devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				status, err := d.step(ctx)
				fl.mu.Lock()
				obs := fl.observer
				want := append([]string(nil), fl.want[d]...)
				fl.mu.Unlock()
				if obs != nil && ctx.Err() == nil {
					obs(status, err)
				}
				select {
				case <-stop:
					if d.settled(want) {
						return
					}
				default:
				}
				time.Sleep(pause/2 + rand.N(pause))
			}
		}()
	}
	wg.Wait()
}

// observe sets the function told about every device answer.
func (fl *fleet) observe(f func(status int, err error)) {
	fl.mu.Lock()
	fl.observer = f
	fl.mu.Unlock()
}

// check fails unless every command a device had to get was received
// exactly once and acknowledged, no command came back after its ack was
// accepted, and commands whose enqueue had no clear answer came at most
// once. It returns the number of commands checked.
func (fl *fleet) check(t *testing.T) int {
	t.Helper()
	fl.mu.Lock()
	defer fl.mu.Unlock()
	n := 0
	for _, d := range fl.devs {
		d.mu.Lock()
		for _, u := range fl.want[d] {
			n++
			switch {
			case !d.acked[u]:
				t.Errorf("device %s: command %s never acknowledged (received %d times)", d.dev.UDID(), u, d.received[u])
			case d.received[u] != 1:
				t.Errorf("device %s: command %s received %d times, want exactly once", d.dev.UDID(), u, d.received[u])
			}
		}
		for u, k := range d.received {
			if k > 1 && fl.maybe[u] {
				t.Errorf("device %s: command %s (enqueue unanswered) received %d times", d.dev.UDID(), u, k)
			}
		}
		if len(d.late) > 0 {
			t.Errorf("device %s: commands received again after their acknowledgement was accepted: %v", d.dev.UDID(), d.late)
		}
		d.mu.Unlock()
	}
	return n
}

// accepted returns the "device command" pairs of every acknowledgement
// the server accepted (answered 200).
func (fl *fleet) accepted() map[string]bool {
	out := map[string]bool{}
	for _, d := range fl.devs {
		d.mu.Lock()
		for u := range d.acked {
			out[d.dev.UDID()+" "+u] = true
		}
		d.mu.Unlock()
	}
	return out
}

// getStatus returns the status of a GET of url, 0 if it failed.
func getStatus(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// grepLines returns the lines of text that contain substr.
func grepLines(text, substr string) string {
	var b strings.Builder
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, substr) {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}
