package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nanomdm/nanomdm/http/scep"
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

// StoreSCEPChallenge implements storage.SCEPChallengeStore.
func (s *instrumented) StoreSCEPChallenge(ctx context.Context, key string, expires time.Time) error {
	start := time.Now()
	err := s.next.StoreSCEPChallenge(ctx, key, expires)
	s.done("StoreSCEPChallenge", start, err)
	return err
}

// ConsumeSCEPChallenge implements storage.SCEPChallengeStore.
func (s *instrumented) ConsumeSCEPChallenge(ctx context.Context, key string) (bool, error) {
	start := time.Now()
	valid, err := s.next.ConsumeSCEPChallenge(ctx, key)
	s.done("ConsumeSCEPChallenge", start, err)
	return valid, err
}
