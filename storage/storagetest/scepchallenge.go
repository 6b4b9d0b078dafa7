package storagetest

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/storage"
)

// testSCEPChallenges covers storage.SCEPChallengeStore: a challenge is
// good once, until it expires, and concurrent consumers cannot both win.
func testSCEPChallenges(t *testing.T, s storage.AllStorage) {
	ctx := context.Background()
	c := s

	key := NewCertHash()
	if err := c.StoreSCEPChallenge(ctx, key, time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("store: %v", err)
	}
	for i, want := range []bool{true, false} {
		if have, err := c.ConsumeSCEPChallenge(ctx, key); err != nil || have != want {
			t.Errorf("consume #%d: have %v, %v; want %v", i+1, have, err, want)
		}
	}
	if have, err := c.ConsumeSCEPChallenge(ctx, NewCertHash()); err != nil || have {
		t.Errorf("consume unknown: have %v, %v; want false", have, err)
	}

	expired := NewCertHash()
	if err := c.StoreSCEPChallenge(ctx, expired, time.Now().Add(-time.Second)); err != nil {
		t.Fatalf("store expired: %v", err)
	}
	if have, err := c.ConsumeSCEPChallenge(ctx, expired); err != nil || have {
		t.Errorf("consume expired: have %v, %v; want false", have, err)
	}

	// Storing again replaces the expiry.
	renewed := NewCertHash()
	if err := c.StoreSCEPChallenge(ctx, renewed, time.Now().Add(-time.Second)); err != nil {
		t.Fatalf("store: %v", err)
	}
	if err := c.StoreSCEPChallenge(ctx, renewed, time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("store again: %v", err)
	}
	if have, err := c.ConsumeSCEPChallenge(ctx, renewed); err != nil || !have {
		t.Errorf("consume re-stored: have %v, %v; want true", have, err)
	}

	// Many stores (the file backend sweeps expired keys every so often)
	// keep the live ones.
	live := NewCertHash()
	if err := c.StoreSCEPChallenge(ctx, live, time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("store: %v", err)
	}
	for range 70 {
		if err := c.StoreSCEPChallenge(ctx, NewCertHash(), time.Now().Add(-time.Second)); err != nil {
			t.Fatalf("store: %v", err)
		}
	}
	if have, err := c.ConsumeSCEPChallenge(ctx, live); err != nil || !have {
		t.Errorf("consume after sweeps: have %v, %v; want true", have, err)
	}

	race := NewCertHash()
	if err := c.StoreSCEPChallenge(ctx, race, time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("store: %v", err)
	}
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			ok, err := c.ConsumeSCEPChallenge(ctx, race)
			if err != nil {
				t.Errorf("concurrent consume: %v", err)
			}
			if ok {
				wins.Add(1)
			}
		})
	}
	wg.Wait()
	if have := wins.Load(); have != 1 {
		t.Errorf("concurrent consumers that won: have %d, want 1", have)
	}
}
