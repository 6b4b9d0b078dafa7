package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nanomdm/nanomdm/service/webhook"
	"github.com/nanomdm/nanomdm/storage"
)

// ObserveWebhook implements webhook.Observer: pass the Metrics to
// webhook.WithObserver.
func (m *Metrics) ObserveWebhook(o webhook.Outcome) {
	switch o {
	case webhook.Delivered:
		m.webhookDeliveries.Inc()
	case webhook.Retried:
		m.webhookRetries.Inc()
	default:
		m.webhookFailures.WithLabelValues(string(o)).Inc()
	}
}

var _ webhook.Observer = (*Metrics)(nil)

// Append implements storage.OutboxStore.
func (s *instrumented) Append(ctx context.Context, events []storage.OutboxEvent) error {
	start := time.Now()
	err := s.next.Append(ctx, events)
	s.done("Append", start, err)
	return err
}

// Claim implements storage.OutboxStore.
func (s *instrumented) Claim(ctx context.Context, owner string, n int, lease time.Duration) ([]storage.OutboxEvent, error) {
	start := time.Now()
	events, err := s.next.Claim(ctx, owner, n, lease)
	s.done("Claim", start, err)
	return events, err
}

// Delete implements storage.OutboxStore.
func (s *instrumented) Delete(ctx context.Context, ids []int64) error {
	start := time.Now()
	err := s.next.Delete(ctx, ids)
	s.done("Delete", start, err)
	return err
}

// Release implements storage.OutboxStore.
func (s *instrumented) Release(ctx context.Context, owner string, ids []int64, retryAt time.Time) error {
	start := time.Now()
	err := s.next.Release(ctx, owner, ids, retryAt)
	s.done("Release", start, err)
	return err
}

// Trim implements storage.OutboxStore.
func (s *instrumented) Trim(ctx context.Context, maxEvents int, before time.Time) (int, error) {
	start := time.Now()
	n, err := s.next.Trim(ctx, maxEvents, before)
	s.done("Trim", start, err)
	return n, err
}

// OutboxStats implements storage.OutboxStore.
func (s *instrumented) OutboxStats(ctx context.Context) (storage.OutboxStats, error) {
	start := time.Now()
	st, err := s.next.OutboxStats(ctx)
	s.done("OutboxStats", start, err)
	return st, err
}

// outboxCollector reads the outbox stats once per scrape.
type outboxCollector struct {
	stats      func(context.Context) (storage.OutboxStats, error)
	depth, age *prometheus.Desc
}

func (c *outboxCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.depth; ch <- c.age }

func (c *outboxCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := c.stats(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.depth, err)
		return
	}
	age := 0.0
	if !st.Oldest.IsZero() {
		age = max(time.Since(st.Oldest).Seconds(), 0)
	}
	ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(st.Depth))
	ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, age)
}

// WatchOutbox registers nanomdm_webhook_outbox_depth and
// nanomdm_webhook_outbox_oldest_age_seconds, read from stats (the
// storage's OutboxStats) at each scrape. Call it once, and only when the
// webhook runs.
func (m *Metrics) WatchOutbox(stats func(context.Context) (storage.OutboxStats, error)) {
	m.reg.MustRegister(&outboxCollector{
		stats: stats,
		depth: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "webhook", "outbox_depth"),
			"Webhook events in the outbox (waiting or being delivered), on every server sharing the storage.", nil, nil),
		age: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "webhook", "outbox_oldest_age_seconds"),
			"Age of the oldest webhook event in the outbox; 0 when empty.", nil, nil),
	})
}
