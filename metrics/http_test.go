package metrics

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	mdmhttp "github.com/nanomdm/nanomdm/http"
)

// TestWatchBodyBudget: the bytes in flight follow the budget's
// reservations, and a request refused for the budget is counted.
func TestWatchBodyBudget(t *testing.T) {
	m := New("test")
	b := mdmhttp.NewBodyBudget(100, time.Nanosecond)
	m.WatchBodyBudget(b)
	scrape := func(want ...string) {
		t.Helper()
		rec := httptest.NewRecorder()
		m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		for _, line := range want {
			if !strings.Contains(rec.Body.String(), "\n"+line+"\n") {
				t.Errorf("metrics output lacks %q", line)
			}
		}
	}
	scrape("nanomdm_http_body_bytes_in_flight 0", "nanomdm_http_body_budget_bytes 100", "nanomdm_http_body_budget_refused_total 0")
	release, err := b.Reserve(context.Background(), 70)
	if err != nil {
		t.Fatalf("reserving: %v", err)
	}
	if _, err := b.Reserve(context.Background(), 40); err == nil {
		t.Fatal("reserved past the budget")
	}
	scrape("nanomdm_http_body_bytes_in_flight 70", "nanomdm_http_body_budget_refused_total 1")
	release()
	scrape("nanomdm_http_body_bytes_in_flight 0", "nanomdm_http_body_budget_refused_total 1")
}
