package sqltest

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/http/api"
	"github.com/nanomdm/nanomdm/log"
	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/mdm/simulator"
	"github.com/nanomdm/nanomdm/service/nanomdm"
	"github.com/nanomdm/nanomdm/storage/internal/sqlstore"
	"github.com/nanomdm/nanomdm/storage/storagetest"
)

// Round-trip budgets of one device request.
const (
	MaxIdleRoundTrips = 2 // Idle report, empty queue
	MaxAckRoundTrips  = 4 // Acknowledged report answered with the next command
)

// TestRoundTrips counts the network round trips between server and
// database of the core service's command-loop requests on warm
// connections: one device goes through the loop first, so statements the
// dialect prepares once per connection are in place, then a second one is
// counted.
func TestRoundTrips(t *testing.T, b *Backend, options string) {
	var c Counter
	s := b.OpenFresh(t, options, sqlstore.WithDial(c.Dial))
	svc := nanomdm.New(s)

	loop := func(counted bool) {
		dev := storagetest.NewDevice(t)
		dev.Enroll(t, s)
		request := func(what string, report *mdm.CommandResults, want *mdm.Command, budget int64) {
			t.Helper()
			dials, before := c.Dials(), c.RoundTrips()
			have, err := svc.CommandAndReportResults(dev.Request(), report)
			n := c.RoundTrips() - before
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			if (have == nil) != (want == nil) || (want != nil && have.CommandUUID != want.CommandUUID) {
				t.Fatalf("%s: have next command %v, want %v", what, have, want)
			}
			if !counted {
				return
			}
			if c.Dials() != dials {
				t.Fatalf("%s: a connection was opened during the request; round trips not comparable", what)
			}
			t.Logf("%s (options %q): %d round trips", what, options, n)
			if budget > 0 && n > budget {
				t.Errorf("%s: %d round trips, want at most %d", what, n, budget)
			}
		}
		request("Idle, empty queue", dev.Idle(t), nil, MaxIdleRoundTrips)
		a, b2, c2 := storagetest.NewCommand(t, "DeviceInformation"), storagetest.NewCommand(t, "ProfileList"), storagetest.NewCommand(t, "SecurityInfo")
		storagetest.Enqueue(t, s, a, dev)
		storagetest.Enqueue(t, s, b2, dev)
		storagetest.Enqueue(t, s, c2, dev)
		request("Idle, queued command", dev.Idle(t), a, MaxIdleRoundTrips)
		request("Acknowledged, next command", dev.Report(t, mdm.StatusAcknowledged, a.CommandUUID), b2, MaxAckRoundTrips)
		request("NotNow, next command", dev.Report(t, mdm.StatusNotNow, b2.CommandUUID), c2, MaxAckRoundTrips)
		request("Acknowledged, NotNow command again", dev.Report(t, mdm.StatusAcknowledged, c2.CommandUUID), b2, MaxAckRoundTrips)
		request("Acknowledged, queue empty", dev.Report(t, mdm.StatusAcknowledged, b2.CommandUUID), nil, MaxAckRoundTrips)
	}
	loop(false)
	loop(true)
}

// TestPool drives 8 simulated devices concurrently through the real
// handlers and checks that the sessions opened stay within the pool size
// (idle connections are kept), then shows the contrast with a pool that
// keeps none.
func TestPool(t *testing.T, b *Backend) {
	const devices, rounds, poolSize = 8, 6, 4
	fleet := NewFleet(t)
	run := func(t *testing.T, options string) int64 {
		var c Counter
		s := b.OpenFresh(t, options, sqlstore.WithDial(c.Dial))
		srv := server(t, fleet.Handler(s, log.Nop))
		ctx := context.Background()
		var wg sync.WaitGroup
		for i := 0; i < devices; i++ {
			d := fleet.Device(t, srv.URL+"/mdm", srv.Client())
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := d.Enroll(ctx); err != nil {
					t.Errorf("enroll: %v", err)
					return
				}
				for r := 0; r < rounds; r++ {
					cmd := storagetest.NewCommand(t, "DeviceInformation")
					if err := Enqueue(ctx, srv.Client(), srv.URL, cmd, []string{d.UDID()}); err != nil {
						t.Errorf("enqueue: %v", err)
						return
					}
					got, err := d.Channel.Drain(ctx, simulator.Acknowledge, 0)
					if err != nil || len(got) != 1 {
						t.Errorf("drain: have %d commands, %v; want 1", len(got), err)
						return
					}
				}
			}()
		}
		wg.Wait()
		return c.Dials()
	}
	var kept int64
	t.Run("IdleKept", func(t *testing.T) {
		kept = run(t, "max_open_conns=4")
		t.Logf("%d devices, %d requests each: %d database sessions opened (pool size %d)", devices, 2+3*rounds, kept, poolSize)
		if kept > poolSize {
			t.Errorf("%d sessions opened, want at most the pool size %d", kept, poolSize)
		}
	})
	t.Run("NoIdle", func(t *testing.T) {
		n := run(t, "max_open_conns=4,max_idle_conns=0")
		t.Logf("same load keeping no idle connections: %d sessions opened", n)
		if n <= poolSize {
			t.Errorf("without idle connections only %d sessions opened: the load does not exercise the pool", n)
		}
	})
}

// LargeEnqueueIDs is the number of IDs of TestLargeEnqueue.
const LargeEnqueueIDs = 100_000

// TestLargeEnqueue sends one /v1/enqueue call naming 100,000 enrolled
// devices and checks that it succeeds with one command row and one queue
// row per device.
func TestLargeEnqueue(t *testing.T, b *Backend, options string) {
	s := b.OpenFresh(t, options)
	ids := make([]string, LargeEnqueueIDs)
	for i := range ids {
		ids[i] = storagetest.RandomUUID()
	}
	seed := timed(func() { SeedEnrollments(t, b, s.DB(), ids) })
	t.Logf("seeded %d enrollments in %v", len(ids), seed.Round(time.Millisecond))

	cmd := storagetest.NewCommand(t, "DeviceInformation")
	h := api.EnqueueHandler(s)
	req := httptest.NewRequest(http.MethodPut, "/"+strings.Join(ids, ",")+"?nopush=1", bytes.NewReader(cmd.Raw))
	rec := httptest.NewRecorder()
	took := timed(func() { h.ServeHTTP(rec, req) })
	t.Logf("one /v1/enqueue call with %d IDs (options %q): %v", len(ids), options, took.Round(time.Millisecond))
	if rec.Code != http.StatusOK {
		t.Fatalf("enqueue: status %d: %.300s", rec.Code, rec.Body.String())
	}
	db := s.DB()
	q := func(n int) string { return b.Placeholder(n) }
	if n := Count(t, db, "SELECT COUNT(*) FROM "+b.Table("commands")+" WHERE command_uuid = "+q(1), cmd.CommandUUID); n != 1 {
		t.Errorf("command rows: have %d, want 1", n)
	}
	if n := Count(t, db, "SELECT COUNT(*) FROM "+b.Table("enrollment_queue")+" WHERE command_uuid = "+q(1), cmd.CommandUUID); n != len(ids) {
		t.Errorf("queue rows: have %d, want %d", n, len(ids))
	}
	for _, id := range []string{ids[0], ids[len(ids)/2], ids[len(ids)-1]} {
		dev := &storagetest.Channel{EnrollID: &mdm.EnrollID{Type: mdm.Device, ID: id}}
		storagetest.WantNext(t, s, dev, false, cmd)
	}
}
