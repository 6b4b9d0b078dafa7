// Package pushsvc pushes to enrollments by ID: it looks up their push
// data, groups them by APNs topic, and sends each group through the
// provider built from that topic's push certificate. Providers are cached
// per topic and rebuilt only when the stored certificate changes.
package pushsvc

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync"

	"github.com/nanomdm/nanomdm/log"
	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/push"
	"github.com/nanomdm/nanomdm/storage"
)

// Provider sends pushes with one push certificate (see push/nanopush).
type Provider interface {
	// Push sends one push per element of pushes and returns the results
	// in the same order. A failure concerns its own push only.
	Push(ctx context.Context, pushes []*mdm.Push) []push.Response
	// Close releases the provider's connections once its pushes are done.
	Close()
}

// Store is the storage the service reads: the push data of enrollments
// and the push certificates of topics.
type Store interface {
	storage.PushStore
	storage.PushCertRetriever
}

// Option configures a Service.
type Option func(*Service)

// WithLogger sets the logger.
func WithLogger(l log.Logger) Option { return func(s *Service) { s.logger = l } }

// Service pushes to enrollments by ID. It is safe for concurrent use and
// satisfies the Pusher of the API handlers.
type Service struct {
	store       Store
	newProvider func(cert *tls.Certificate) (Provider, error)
	logger      log.Logger

	mu     sync.Mutex // guards topics and the use counts of providers
	topics map[string]*topicSlot
}

// topicSlot holds the current provider of one topic.
type topicSlot struct {
	refresh sync.Mutex // one staleness check or rebuild at a time
	cur     *cachedProvider
}

// cachedProvider is a provider with the stale token of its certificate.
// A replaced provider is closed when its last push call is done.
type cachedProvider struct {
	Provider
	staleToken string
	users      int
	retired    bool
}

// New returns a Service that reads push data and certificates from store
// and builds the provider of a topic with newProvider (such as
// nanopush.Factory.NewProvider).
func New[P Provider](store Store, newProvider func(cert *tls.Certificate) (P, error), opts ...Option) *Service {
	s := &Service{
		store: store,
		newProvider: func(cert *tls.Certificate) (Provider, error) {
			p, err := newProvider(cert)
			if err != nil {
				return nil, err // not a Provider holding a nil P
			}
			return p, nil
		},
		logger: log.Nop,
		topics: map[string]*topicSlot{},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// group is the enrollments of one topic in a push call.
type group struct {
	ids    []string
	pushes []*mdm.Push
}

// Push pushes to every ID and returns a result for each: the apns-id or
// the error for that ID alone. An ID without push data gets
// push.ErrNoPushInfo; the IDs of a topic without a usable certificate get
// that error. The error return is for a failure to look up the push data,
// which leaves no ID a result.
func (s *Service) Push(ctx context.Context, ids []string) (map[string]*push.Response, error) {
	infos, err := s.store.RetrievePushInfo(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("retrieving push info: %w", err)
	}
	results := make(map[string]*push.Response, len(ids))
	groups := map[string]*group{}
	for _, id := range ids {
		if _, dup := results[id]; dup {
			continue
		}
		info := infos[id]
		if info == nil || len(info.Token) == 0 || info.PushMagic == "" || info.Topic == "" {
			results[id] = &push.Response{Err: push.ErrNoPushInfo}
			continue
		}
		results[id] = nil // claimed; filled in below
		g := groups[info.Topic]
		if g == nil {
			g = &group{}
			groups[info.Topic] = g
		}
		g.ids = append(g.ids, id)
		g.pushes = append(g.pushes, info)
	}

	type done struct {
		g   *group
		res []push.Response
		err error
	}
	out := make(chan done, len(groups))
	for topic, g := range groups {
		// One goroutine per topic; a server has a handful of topics at
		// most, and each provider bounds its own requests.
		go func() {
			res, err := s.pushTopic(ctx, topic, g.pushes)
			out <- done{g, res, err}
		}()
	}
	for range groups {
		d := <-out
		for i, id := range d.g.ids {
			if d.err != nil {
				results[id] = &push.Response{Err: d.err}
				continue
			}
			r := d.res[i]
			results[id] = &r
		}
	}
	return results, nil
}

// pushTopic sends the pushes of one topic through its provider.
func (s *Service) pushTopic(ctx context.Context, topic string, pushes []*mdm.Push) ([]push.Response, error) {
	p, err := s.acquire(ctx, topic)
	if err != nil {
		return nil, err
	}
	defer s.release(p)
	res := p.Push(ctx, pushes)
	if len(res) != len(pushes) {
		return nil, fmt.Errorf("push provider for topic %q returned %d results for %d pushes", topic, len(res), len(pushes))
	}
	var failed int
	for _, r := range res {
		if r.Err != nil {
			failed++
		}
	}
	log.From(ctx, s.logger).Debug("msg", "pushed", "topic", topic, "count", len(pushes), "failed", failed)
	return res, nil
}

// acquire returns the provider of topic, marked in use, after one
// staleness check of its certificate (or, for a topic not seen yet, one
// retrieval). A changed certificate replaces the provider.
func (s *Service) acquire(ctx context.Context, topic string) (*cachedProvider, error) {
	s.mu.Lock()
	slot := s.topics[topic]
	if slot == nil {
		slot = &topicSlot{}
		s.topics[topic] = slot
	}
	s.mu.Unlock()

	slot.refresh.Lock()
	defer slot.refresh.Unlock()
	if cur := slot.cur; cur != nil {
		stale, err := s.store.IsPushCertStale(ctx, topic, cur.staleToken)
		if err != nil {
			return nil, fmt.Errorf("checking push cert of topic %q: %w", topic, err)
		}
		if !stale {
			s.mu.Lock()
			cur.users++
			s.mu.Unlock()
			return cur, nil
		}
	}
	cert, token, err := s.store.RetrievePushCert(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("retrieving push cert of topic %q: %w", topic, err)
	}
	prov, err := s.newProvider(cert)
	if err != nil {
		return nil, fmt.Errorf("building push provider for topic %q: %w", topic, err)
	}
	next := &cachedProvider{Provider: prov, staleToken: token, users: 1}
	s.mu.Lock()
	old := slot.cur
	slot.cur = next
	closeOld := old != nil && old.users == 0
	if old != nil {
		old.retired = true
	}
	if s.topics[topic] != slot {
		next.retired = true // Close ran meanwhile: nobody else will close it
	}
	s.mu.Unlock()
	if closeOld {
		old.Close()
	}
	if old != nil {
		s.logger.Info("msg", "push certificate changed, new provider", "topic", topic)
	}
	return next, nil
}

// release ends a use of p and closes it if it was replaced meanwhile.
func (s *Service) release(p *cachedProvider) {
	s.mu.Lock()
	p.users--
	closeIt := p.retired && p.users == 0
	s.mu.Unlock()
	if closeIt {
		p.Close()
	}
}

// Close closes every provider (those in use once their pushes are done).
// Later pushes build new providers.
func (s *Service) Close() {
	var idle []*cachedProvider
	s.mu.Lock()
	for topic, slot := range s.topics {
		// Take the slot's provider without waiting for a refresh in
		// progress: that refresh keeps its own, unretired, provider.
		if cur := slot.cur; cur != nil {
			cur.retired = true
			if cur.users == 0 {
				idle = append(idle, cur)
			}
		}
		delete(s.topics, topic)
	}
	s.mu.Unlock()
	for _, p := range idle {
		p.Close()
	}
}
