package metrics

import "github.com/nanomdm/nanomdm/service/webhook"

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
