package main

import (
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/nanomdm/nanomdm/log"
	"github.com/nanomdm/nanomdm/metrics"
	"github.com/nanomdm/nanomdm/storage"
)

// instrument wraps the storage in metrics. Every backend implements the
// roles of metrics.Store; one that did not is refused at start-up rather
// than failing operators' requests later.
func instrument(store storage.AllStorage, m *metrics.Metrics) (metrics.Store, error) {
	full, ok := store.(metrics.Store)
	if !ok {
		return nil, fmt.Errorf("storage %T lacks the inspection, certificate-lookup or ping methods", store)
	}
	return m.Storage(full), nil
}

// startMetrics serves /metrics, unauthenticated, on a listener of its
// own at addr: for a scraper on a private network. It returns a function
// that stops serving.
func startMetrics(addr string, h http.Handler, logger log.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	metricsMux := http.NewServeMux()
	metricsMux.Handle("GET /metrics", h)
	srv := &http.Server{Handler: metricsMux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	logger.Info("msg", "serving metrics", "addr", ln.Addr().String())
	return func() { srv.Close() }, nil
}
