package main

import (
	"net"
	"net/http"
	"time"

	"github.com/nanomdm/nanomdm/log"
)

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
