package http

import (
	"context"
	"errors"
	nethttp "net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/log"
)

// pingFunc adapts a function to storage.Pinger.
type pingFunc func(context.Context) error

func (f pingFunc) Ping(ctx context.Context) error { return f(ctx) }

func TestHealthAndReady(t *testing.T) {
	up := pingFunc(func(context.Context) error { return nil })
	down := pingFunc(func(context.Context) error { return errors.New("connection refused: secret-db-host:5432") })
	hung := pingFunc(func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	for _, tc := range []struct {
		name string
		h    nethttp.Handler
		want int
		body string
	}{
		{"healthz", HealthHandler(), 200, `{"status":"ok"}`},
		{"readyz up", ReadyHandler(up, time.Second, log.Nop), 200, `{"status":"ok"}`},
		{"readyz down", ReadyHandler(down, time.Second, log.Nop), 503, `{"status":"unavailable"}`},
		{"readyz hung", ReadyHandler(hung, 20*time.Millisecond, log.Nop), 503, `{"status":"unavailable"}`},
	} {
		rec := httptest.NewRecorder()
		tc.h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		if rec.Code != tc.want || strings.TrimSpace(rec.Body.String()) != tc.body {
			t.Errorf("%s: have %d %s, want %d %s", tc.name, rec.Code, rec.Body.String(), tc.want, tc.body)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: Content-Type %q", tc.name, ct)
		}
	}
}
