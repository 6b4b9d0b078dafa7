package main

import (
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/nanomdm/nanomdm/log"
)

// startPprof serves Go's runtime profiles (/debug/pprof/) on addr, a
// listener of its own so that they are never exposed with the MDM and API
// routes (which is also why they are not in docs/openapi.yaml). It
// returns a function that stops serving.
func startPprof(addr string, logger log.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(servePprof), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	logger.Info("msg", "serving profiles", "addr", ln.Addr().String())
	return func() { srv.Close() }, nil
}

// servePprof answers the profile endpoints of net/http/pprof.
func servePprof(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/debug/pprof/cmdline":
		pprof.Cmdline(w, r)
	case "/debug/pprof/profile":
		pprof.Profile(w, r)
	case "/debug/pprof/symbol":
		pprof.Symbol(w, r)
	case "/debug/pprof/trace":
		pprof.Trace(w, r)
	default:
		pprof.Index(w, r) // the index and the named profiles (heap, goroutine, ...)
	}
}
