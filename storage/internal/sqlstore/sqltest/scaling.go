package sqltest

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/mdm/simulator"
	"github.com/nanomdm/nanomdm/storage/internal/sqlstore"
	"github.com/nanomdm/nanomdm/storage/storagetest"
)

// Scaling is the shape of TestScaling.
type Scaling struct {
	Devices   int // simulated devices
	Enqueues  int // /v1/enqueue calls, each to a random share of the devices
	Enqueuers int // concurrent enqueue callers
	Timeout   time.Duration
}

// DefaultScaling is the load of the horizontal-scaling test.
var DefaultScaling = Scaling{Devices: 200, Enqueues: 16, Enqueuers: 6, Timeout: 3 * time.Minute}

// balancer sends each request to one of several servers at random, as a
// load balancer without affinity would.
type balancer struct {
	targets []*url.URL
	counts  []atomic.Int64
	next    http.RoundTripper
}

func (lb *balancer) RoundTrip(r *http.Request) (*http.Response, error) {
	i := mrand.IntN(len(lb.targets))
	lb.counts[i].Add(1)
	r = r.Clone(r.Context())
	r.URL.Scheme, r.URL.Host = lb.targets[i].Scheme, lb.targets[i].Host
	r.Host = ""
	return lb.next.RoundTrip(r)
}

// TestScaling runs two server instances, each with its own connection
// pool, on one database. Simulated devices send each request to either
// instance at random while commands are enqueued through both
// concurrently, several to the same device at once. Every command must be
// delivered and acknowledged exactly once per device, and no device may
// see an error (a deadlock or serialization failure would surface as a
// 500).
func TestScaling(t *testing.T, b *Backend, options string, sc Scaling) {
	ctx, cancel := context.WithTimeout(context.Background(), sc.Timeout)
	defer cancel()
	dsn := b.FreshDSN(t)
	fleet := NewFleet(t)
	poolOpts := "max_open_conns=8"
	if options != "" {
		poolOpts = options + "," + poolOpts
	}
	logs := NewRecorder()
	var stores []Store
	lb := &balancer{counts: make([]atomic.Int64, 2)}
	for i := 0; i < 2; i++ {
		s := b.OpenDSN(t, dsn, poolOpts, sqlstore.WithLogger(logs.With("instance", i)))
		stores = append(stores, s)
		srv := server(t, fleet.Handler(s, logs.With("instance", i)))
		u, _ := url.Parse(srv.URL)
		lb.targets = append(lb.targets, u)
	}
	lb.next = &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}
	client := &http.Client{Transport: lb, Timeout: time.Minute}

	devices := make([]*simulator.Device, sc.Devices)
	byID := map[string]int{}
	for i := range devices {
		devices[i] = fleet.Device(t, "http://nanomdm.invalid/mdm", client)
		byID[devices[i].UDID()] = i
	}
	var wg sync.WaitGroup
	for _, d := range devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.Enroll(ctx); err != nil {
				t.Errorf("enrolling %s: %v", d.UDID(), err)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	// The plan: each enqueue names a random share (a third to all) of the
	// devices; the callers run concurrently.
	type job struct {
		cmd *mdm.Command
		ids []string
	}
	jobs := make([]job, sc.Enqueues)
	expected := make([]map[string]bool, len(devices))
	for i := range expected {
		expected[i] = map[string]bool{}
	}
	for j := range jobs {
		perm := mrand.Perm(len(devices))
		n := len(devices)/3 + mrand.IntN(len(devices)-len(devices)/3+1)
		jobs[j].cmd = storagetest.NewCommand(t, fmt.Sprintf("Scaling%02d", j))
		for _, i := range perm[:n] {
			jobs[j].ids = append(jobs[j].ids, devices[i].UDID())
			expected[i][jobs[j].cmd.CommandUUID] = true
		}
	}

	var enqueued atomic.Bool
	var enqWG sync.WaitGroup
	work := make(chan job)
	for w := 0; w < sc.Enqueuers; w++ {
		enqWG.Add(1)
		go func() {
			defer enqWG.Done()
			for j := range work {
				// Pace the calls so that deliveries interleave with them.
				time.Sleep(time.Duration(mrand.IntN(150)) * time.Millisecond)
				if err := Enqueue(ctx, client, "http://nanomdm.invalid", j.cmd, j.ids); err != nil {
					t.Errorf("%v", err)
				}
			}
		}()
	}
	go func() {
		for _, j := range jobs {
			work <- j
		}
		close(work)
		enqWG.Wait()
		enqueued.Store(true)
	}()

	// Each device polls (Idle), answers every command it gets and stops
	// once all enqueues are done and it has everything it was sent.
	received := make([][]string, len(devices))
	var requests atomic.Int64
	for i, d := range devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			seen := map[string]bool{}
			for {
				done := enqueued.Load()
				cmd, err := d.Channel.Idle(ctx)
				requests.Add(1)
				for err == nil && cmd != nil {
					if seen[cmd.CommandUUID] {
						t.Errorf("device %d: command %s delivered again after its acknowledgement", i, cmd.CommandUUID)
						return
					}
					seen[cmd.CommandUUID] = true
					received[i] = append(received[i], cmd.CommandUUID)
					cmd, err = d.Channel.Send(ctx, simulator.Acknowledge(cmd))
					requests.Add(1)
				}
				if err != nil {
					var se *simulator.ErrStatus
					if errors.As(err, &se) {
						t.Errorf("device %d: server answered %d: %s", i, se.Status, se.Body)
					} else {
						t.Errorf("device %d: %v", i, err)
					}
					return
				}
				if done && len(seen) >= len(expected[i]) {
					return
				}
				select {
				case <-ctx.Done():
					t.Errorf("device %d: timed out with %d of %d commands", i, len(seen), len(expected[i]))
					return
				case <-time.After(time.Duration(50+mrand.IntN(150)) * time.Millisecond):
				}
			}
		}()
	}
	wg.Wait()

	total := 0
	for i := range devices {
		total += len(expected[i])
		have := append([]string(nil), received[i]...)
		sort.Strings(have)
		var want []string
		for u := range expected[i] {
			want = append(want, u)
		}
		sort.Strings(want)
		if strings.Join(have, ",") != strings.Join(want, ",") {
			t.Errorf("device %d: received %d commands %v, want %d %v", i, len(have), have, len(want), want)
		}
	}
	t.Logf("%d devices, %d enqueues (%d deliveries), %d device requests; instance shares %d/%d",
		len(devices), len(jobs), total, requests.Load(), lb.counts[0].Load(), lb.counts[1].Load())
	if lb.counts[0].Load() == 0 || lb.counts[1].Load() == 0 {
		t.Errorf("requests did not reach both instances: %d/%d", lb.counts[0].Load(), lb.counts[1].Load())
	}
	for _, l := range logs.Grep("mdm request failed") {
		t.Errorf("server log: %s", l)
	}
	for _, l := range logs.Grep("dropped report") {
		t.Errorf("server log: %s", l)
	}
	if n := len(logs.Grep("retrying after transient")); n > 0 {
		t.Logf("transient database errors retried inside the backend: %d", n)
	}

	db := stores[0].DB()
	if n := Count(t, db, "SELECT COUNT(*) FROM "+b.Table("enrollment_queue")+" WHERE active = TRUE"); n != 0 {
		t.Errorf("active queue rows left: %d", n)
	}
	if strings.Contains(options, "delete=1") {
		for _, table := range []string{"enrollment_queue", "command_results", "commands"} {
			if n := Count(t, db, "SELECT COUNT(*) FROM "+b.Table(table)); n != 0 {
				t.Errorf("delete=1: %d rows left in %s, want none", n, b.Table(table))
			}
		}
	} else if n := Count(t, db, "SELECT COUNT(*) FROM "+b.Table("command_results")+" WHERE status = 'Acknowledged'"); n != total {
		t.Errorf("acknowledged results stored: have %d, want %d", n, total)
	}
}
