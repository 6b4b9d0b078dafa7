package http

import (
	"context"
	nethttp "net/http"
	"time"

	"github.com/nanomdm/nanomdm/log"
	"github.com/nanomdm/nanomdm/storage"
)

// DefaultReadyTimeout bounds the storage check of ReadyHandler.
const DefaultReadyTimeout = 5 * time.Second

type healthAnswer struct {
	Status string `json:"status"`
}

// HealthHandler answers 200 {"status":"ok"} for as long as the process
// serves HTTP: a liveness check that looks at nothing else.
func HealthHandler() nethttp.Handler {
	return nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		WriteJSON(w, nethttp.StatusOK, healthAnswer{"ok"})
	})
}

// ReadyHandler answers 200 {"status":"ok"} when the storage answers a
// ping within timeout, and 503 {"status":"unavailable"} otherwise: a
// readiness check for load balancers. The storage error is logged, not
// shown: the endpoint needs no credentials.
func ReadyHandler(p storage.Pinger, timeout time.Duration, logger log.Logger) nethttp.Handler {
	return nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		if err := p.Ping(ctx); err != nil {
			log.From(r.Context(), logger).Info("msg", "readiness check", "err", err)
			WriteJSON(w, nethttp.StatusServiceUnavailable, healthAnswer{"unavailable"})
			return
		}
		WriteJSON(w, nethttp.StatusOK, healthAnswer{"ok"})
	})
}
