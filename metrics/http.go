package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	mdmhttp "github.com/nanomdm/nanomdm/http"
)

// HTTPMiddleware counts the requests next answers by route and status
// code, times them by route and tracks those in flight. next is, or ends
// in, an http.ServeMux: the route is the pattern the mux matched, which
// it records in the request's Pattern as it dispatches (the mux matches
// once; nothing here matches again). Requests it matched no pattern for
// are labelled "unmatched".
func (m *Metrics) HTTPMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.inFlight.Inc()
		defer m.inFlight.Dec()
		start := time.Now()
		sw := mdmhttp.NewStatusRecorder(w)
		defer func() {
			// Counted even when next panics (net/http recovers it and
			// drops the connection).
			route := r.Pattern
			if route == "" {
				route = "unmatched"
			}
			m.requests.WithLabelValues(route, strconv.Itoa(sw.Status())).Inc()
			m.requestSeconds.WithLabelValues(route).Observe(time.Since(start).Seconds())
		}()
		next.ServeHTTP(sw, r)
	})
}

// WatchBodyBudget exports the body budget b: the bytes of request bodies
// reserved now, the budget's size, and the requests refused for it.
// Call it once.
func (m *Metrics) WatchBodyBudget(b *mdmhttp.BodyBudget) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: Namespace, Subsystem: "http", Name: "body_bytes_in_flight",
			Help: "Bytes of request bodies being read or held now, as reserved in the body budget.",
		}, func() float64 { return float64(b.InFlight()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: Namespace, Subsystem: "http", Name: "body_budget_bytes",
			Help: "Size of the body budget (-body-budget).",
		}, func() float64 { return float64(b.Limit()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "http", Name: "body_budget_refused_total",
			Help: "Requests answered 503 because their body found no room in the budget.",
		}, func() float64 { return float64(b.Refused()) }),
	)
}
