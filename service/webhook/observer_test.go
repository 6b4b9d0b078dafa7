package webhook

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/storage/inmem"
	"github.com/nanomdm/nanomdm/storage/storagetest"
)

// TestObserver checks the outcomes an Observer hears: a retried then
// delivered event, an event given up after its retries, and one dropped
// after Close.
func TestObserver(t *testing.T) {
	for _, tc := range []struct {
		name     string
		failures int32 // answers 503 this many times, then 200
		want     []Outcome
	}{
		{"retried then delivered", 1, []Outcome{Retried, Delivered, DroppedClosed}},
		{"given up", 100, []Outcome{Retried, Failed, DroppedClosed}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if calls.Add(1) <= tc.failures {
					w.WriteHeader(http.StatusServiceUnavailable)
				}
			}))
			defer srv.Close()
			var mu sync.Mutex
			var have []Outcome
			w := New(srv.URL, inmem.New(), WithRetries(1), WithBackoff(time.Millisecond),
				WithObserver(ObserverFunc(func(o Outcome) {
					mu.Lock()
					have = append(have, o)
					mu.Unlock()
				})))
			dev := storagetest.NewDevice(t)
			if _, err := w.Checkin(dev.Request(), dev.Authenticate(t)); err != nil {
				t.Fatalf("authenticate: %v", err)
			}
			if err := w.Close(context.Background()); err != nil {
				t.Fatalf("close: %v", err)
			}
			if _, err := w.Checkin(dev.Request(), dev.Authenticate(t)); err == nil {
				t.Fatal("event after Close: no error")
			}
			mu.Lock()
			defer mu.Unlock()
			if fmtOutcomes(have) != fmtOutcomes(tc.want) {
				t.Errorf("outcomes: have %v, want %v", have, tc.want)
			}
		})
	}
}

func fmtOutcomes(os []Outcome) string {
	var s []string
	for _, o := range os {
		s = append(s, string(o))
	}
	return strings.Join(s, ",")
}
