// Package metrics exposes what the server does as Prometheus metrics. A
// Metrics owns a registry of its own (never the client library's global
// one) and hands out instruments for each layer, each the layer's own
// interface plus a next: HTTP middleware, a service link, a storage
// wrapper, a push-service wrapper and a webhook observer. Labels take
// values from small fixed sets (route patterns, message types, statuses,
// reasons, method names), never enrollment IDs or command UUIDs.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/service/webhook"
)

// Namespace prefixes every metric of the server.
const Namespace = "nanomdm"

// durationBuckets are the latency buckets, in seconds: from a fast
// in-memory answer to a slow database or upstream.
var durationBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// Metrics holds the server's collectors.
type Metrics struct {
	reg *prometheus.Registry

	requests       *prometheus.CounterVec
	requestSeconds *prometheus.HistogramVec
	inFlight       prometheus.Gauge

	checkins  *prometheus.CounterVec
	reports   *prometheus.CounterVec
	delivered prometheus.Counter
	enqueued  prometheus.Counter

	pushesSent   prometheus.Counter
	pushFailures *prometheus.CounterVec

	webhookDeliveries prometheus.Counter
	webhookFailures   *prometheus.CounterVec
	webhookRetries    prometheus.Counter

	storageErrors  *prometheus.CounterVec
	storageSeconds *prometheus.HistogramVec

	history reportHistory
}

// knownMessageTypes and knownStatuses are label values set up at zero,
// so that rates and alerts see them before the first occurrence. Other
// values are counted as "other".
var (
	knownMessageTypes = []string{
		mdm.MessageAuthenticate, mdm.MessageTokenUpdate, mdm.MessageCheckOut,
		mdm.MessageUserAuthenticate, mdm.MessageSetBootstrapToken, mdm.MessageGetBootstrapToken,
		mdm.MessageDeclarativeManagement, mdm.MessageGetToken,
	}
	knownStatuses = []string{
		mdm.StatusIdle, mdm.StatusAcknowledged, mdm.StatusError,
		mdm.StatusCommandFormatError, mdm.StatusNotNow,
	}
)

// New returns Metrics with every collector registered, the Go runtime
// and process collectors included, and a build-info gauge of version.
func New(version string) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	f := func(c prometheus.Collector) { m.reg.MustRegister(c) }

	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "http", Name: "requests_total",
		Help: "HTTP requests answered, by route pattern and status code.",
	}, []string{"route", "code"})
	m.requestSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Subsystem: "http", Name: "request_duration_seconds",
		Help:    "Time to answer an HTTP request, by route pattern.",
		Buckets: durationBuckets,
	}, []string{"route"})
	m.inFlight = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace, Subsystem: "http", Name: "requests_in_flight",
		Help: "HTTP requests being answered now.",
	})
	m.checkins = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "checkins_total",
		Help: "Check-in messages received, by message type.",
	}, []string{"message_type"})
	m.reports = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "command_reports_total",
		Help: "Command reports received (Idle included), by status.",
	}, []string{"status"})
	m.delivered = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Name: "commands_delivered_total",
		Help: "Commands sent to devices in answer to a report.",
	})
	m.enqueued = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Name: "commands_enqueued_total",
		Help: "Commands queued, counted once per enrollment queued for.",
	})
	m.pushesSent = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Name: "pushes_sent_total",
		Help: "APNs pushes APNs accepted.",
	})
	m.pushFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "push_failures_total",
		Help: "Pushes that failed, by reason (an APNs reason, or why none was sent).",
	}, []string{"reason"})
	m.webhookDeliveries = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "webhook", Name: "deliveries_total",
		Help: "Webhook events the endpoint accepted.",
	})
	m.webhookFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "webhook", Name: "failures_total",
		Help: "Webhook delivery rounds that failed after their retries (failed: the event waits in the outbox for a later round, unless the endpoint refused it with 4xx) and events dropped unsent (queue_full, expired: beyond the outbox bounds; store_error: the outbox write failed; closed).",
	}, []string{"reason"})
	m.webhookRetries = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "webhook", Name: "retries_total",
		Help: "Webhook delivery attempts that failed and were retried.",
	})
	m.storageErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "storage", Name: "errors_total",
		Help: "Storage calls that failed, by method (expected answers such as an unknown command are not errors).",
	}, []string{"op"})
	m.storageSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Subsystem: "storage", Name: "operation_duration_seconds",
		Help:    "Time of storage calls, by method.",
		Buckets: durationBuckets,
	}, []string{"op"})
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "build_info",
		Help: "Always 1; the version label names the running build.",
	}, []string{"version"})
	buildInfo.WithLabelValues(version).Set(1)

	for _, c := range []prometheus.Collector{
		m.requests, m.requestSeconds, m.inFlight, m.checkins, m.reports, m.delivered, m.enqueued,
		m.pushesSent, m.pushFailures, m.webhookDeliveries, m.webhookFailures, m.webhookRetries,
		m.storageErrors, m.storageSeconds, buildInfo,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		f(c)
	}
	for _, v := range knownMessageTypes {
		m.checkins.WithLabelValues(v)
	}
	for _, v := range knownStatuses {
		m.reports.WithLabelValues(v)
	}
	for _, v := range []webhook.Outcome{webhook.Failed, webhook.DroppedFull, webhook.DroppedExpired, webhook.DroppedStore, webhook.DroppedClosed} {
		m.webhookFailures.WithLabelValues(string(v))
	}
	return m
}

// Registry returns the registry, to add collectors or gather in tests.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus text format. Mount it
// behind Basic auth on the API listener or alone on a private one.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// label returns v if it is one of known, else "other".
func label(v string, known []string) string {
	for _, k := range known {
		if v == k {
			return v
		}
	}
	return "other"
}
