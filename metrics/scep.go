package metrics

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nanomdm/nanomdm/http/scep"
	"github.com/nanomdm/nanomdm/storage"
)

// scepObserver counts SCEP PKIOperations by outcome.
type scepObserver struct{ outcomes *prometheus.CounterVec }

func (o scepObserver) ObserveSCEP(out scep.Outcome) { o.outcomes.WithLabelValues(string(out)).Inc() }

// SCEPObserver registers nanomdm_scep_requests_total (PKIOperations by
// outcome: issued, renewed, bad_challenge …) and returns the observer
// to pass to scep.WithObserver. Call it once, and only when the SCEP
// server runs.
func (m *Metrics) SCEPObserver() scep.Observer {
	o := scepObserver{prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "scep", Name: "requests_total",
		Help: "SCEP PKIOperation requests, by outcome (issued, renewed, bad_challenge, bad_request, bad_message_check, malformed, failed).",
	}, []string{"outcome"})}
	m.reg.MustRegister(o.outcomes)
	for _, v := range []scep.Outcome{scep.Issued, scep.Renewed, scep.BadChallenge, scep.BadRequest, scep.BadMessageCheck, scep.Malformed, scep.Failed} {
		o.outcomes.WithLabelValues(string(v))
	}
	return o
}

// errNoRole is returned by the instrumented store for an optional role
// its backend lacks.
func errNoRole(next any, role string) error {
	return fmt.Errorf("storage %T cannot %s", next, role)
}

// StoreSCEPChallenge implements storage.SCEPChallengeStore when the
// backend does.
func (s *instrumented) StoreSCEPChallenge(ctx context.Context, key string, expires time.Time) error {
	c, ok := s.next.(storage.SCEPChallengeStore)
	if !ok {
		return errNoRole(s.next, "keep SCEP challenges")
	}
	start := time.Now()
	err := c.StoreSCEPChallenge(ctx, key, expires)
	s.done("StoreSCEPChallenge", start, err)
	return err
}

// ConsumeSCEPChallenge implements storage.SCEPChallengeStore when the
// backend does.
func (s *instrumented) ConsumeSCEPChallenge(ctx context.Context, key string) (bool, error) {
	c, ok := s.next.(storage.SCEPChallengeStore)
	if !ok {
		return false, errNoRole(s.next, "keep SCEP challenges")
	}
	start := time.Now()
	valid, err := c.ConsumeSCEPChallenge(ctx, key)
	s.done("ConsumeSCEPChallenge", start, err)
	return valid, err
}

// RetrievePushTopics implements storage.PushTopicLister when the
// backend does.
func (s *instrumented) RetrievePushTopics(ctx context.Context) ([]string, error) {
	l, ok := s.next.(storage.PushTopicLister)
	if !ok {
		return nil, errNoRole(s.next, "list push topics")
	}
	start := time.Now()
	topics, err := l.RetrievePushTopics(ctx)
	s.done("RetrievePushTopics", start, err)
	return topics, err
}
