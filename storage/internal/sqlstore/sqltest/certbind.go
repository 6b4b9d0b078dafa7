package sqltest

import (
	"context"
	"net/http"
	"sync"
	"testing"

	httpmdm "github.com/nanomdm/nanomdm/http/mdm"
	"github.com/nanomdm/nanomdm/log"
	"github.com/nanomdm/nanomdm/mdm/simulator"
	"github.com/nanomdm/nanomdm/service/certauth"
	"github.com/nanomdm/nanomdm/service/nanomdm"
)

// TestCertBindingAcrossInstances runs two server instances on one
// database, each with its own store and certauth, and has two devices
// that present one new identity certificate send their first
// Authenticate at once, one to each instance. In every round exactly one
// device may win the certificate: the other is refused (500, as every
// certauth refusal).
func TestCertBindingAcrossInstances(t *testing.T, b *Backend) {
	const rounds = 20
	fleet := NewFleet(t)
	dsn := b.FreshDSN(t)
	var urls [2]string
	for i := range urls {
		s := b.OpenDSN(t, dsn, "")
		svc := certauth.New(nanomdm.New(s), s, certauth.WithLogger(log.Nop))
		urls[i] = server(t, httpmdm.IdentityMiddleware(httpmdm.CheckinHandler(svc), fleet.Verifier)).URL
	}
	ctx := context.Background()
	for round := range rounds {
		id, err := fleet.CA.Issue(simulator.NewUDID())
		if err != nil {
			t.Fatalf("issuing identity: %v", err)
		}
		var statuses [2]int
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i, url := range urls {
			d := simulator.NewDevice(&simulator.Transport{URL: url}, id)
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				statuses[i] = simulator.StatusOf(d.Authenticate(ctx))
			}()
		}
		close(start)
		wg.Wait()
		won := 0
		for _, st := range statuses {
			switch st {
			case http.StatusOK:
				won++
			case http.StatusInternalServerError: // certauth refused it
			default:
				t.Errorf("round %d: unexpected status %d", round, st)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: statuses %v: %d devices bound one certificate, want exactly 1", round, statuses, won)
		}
	}
}
