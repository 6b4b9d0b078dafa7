package metrics

import (
	"net/http"
	"strconv"
	"time"

	mdmhttp "github.com/nanomdm/nanomdm/http"
)

// HTTPMiddleware counts the requests next answers by route and status
// code, times them by route and tracks those in flight. routeOf names
// the route of a request; it should return the registered pattern (as
// http.ServeMux.Handler does), never anything from the path itself.
// Requests it names no route for are labelled "unmatched".
func (m *Metrics) HTTPMiddleware(next http.Handler, routeOf func(*http.Request) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		route := routeOf(r)
		if route == "" {
			route = "unmatched"
		}
		m.inFlight.Inc()
		defer m.inFlight.Dec()
		start := time.Now()
		sw := mdmhttp.NewStatusRecorder(w)
		defer func() {
			// Counted even when next panics (net/http recovers it and
			// drops the connection).
			m.requests.WithLabelValues(route, strconv.Itoa(sw.Status())).Inc()
			m.requestSeconds.WithLabelValues(route).Observe(time.Since(start).Seconds())
		}()
		next.ServeHTTP(sw, r)
	})
}

// MuxRoute returns a routeOf for HTTPMiddleware that names the pattern
// mux would route a request to.
func MuxRoute(mux *http.ServeMux) func(*http.Request) string {
	return func(r *http.Request) string {
		_, pattern := mux.Handler(r)
		return pattern
	}
}
