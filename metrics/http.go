package metrics

import (
	"net/http"
	"strconv"
	"time"
)

// statusWriter remembers the status code a handler answered with.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the real writer (to flush a
// proxied stream, for example).
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

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
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			// Counted even when next panics (net/http recovers it and
			// drops the connection).
			status := sw.status
			if status == 0 {
				status = http.StatusOK
			}
			m.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
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
