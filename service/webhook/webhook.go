// Package webhook sends a MicroMDM-compatible JSON event to an HTTP
// endpoint for every check-in message and command report. It runs as a
// secondary service (see service/multi): the device's answer never
// depends on it.
//
// Delivery is at least once. Every event is appended to the storage's
// outbox (storage.OutboxStore) before the device's request is answered;
// a dispatcher claims batches of events from the outbox and a fixed pool
// of workers posts them, so a slow or dead endpoint never holds a device
// request. An event is deleted from the outbox once the endpoint has
// accepted it (or refused it with a 4xx answer, which retrying would not
// change). A delivery is retried with exponential back-off on connection
// errors and 5xx answers, a bounded number of times; then the event goes
// back to the outbox and is tried again later, until the endpoint takes
// it or the outbox bounds (size, age) drop it. Events survive a crash or
// restart with a persistent backend; an event whose delivery was cut
// short by a crash is sent again, with the same event_id.
//
// Events of one device (its device channel and its user channels) are
// delivered one at a time in order, also across servers sharing the
// outbox: the outbox hands out only the oldest event of a device.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mathrand "math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nanomdm/nanomdm/log"
	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/service"
	"github.com/nanomdm/nanomdm/storage"
)

// Defaults of the delivery options.
const (
	DefaultTimeout   = 10 * time.Second
	DefaultRetries   = 3
	DefaultBackoff   = 500 * time.Millisecond
	DefaultWorkers   = 4
	DefaultQueueSize = 100000
	DefaultMaxAge    = 7 * 24 * time.Hour
	DefaultLease     = 5 * time.Minute
)

// maxBackoff caps the wait between two attempts, and between two rounds
// of attempts of an event that failed.
const maxBackoff = 30 * time.Second

// minRedelivery is the shortest wait before an event that failed its
// attempts is tried again.
const minRedelivery = time.Second

// pollInterval is how often the dispatcher looks for events it was not
// told about: appended by another server, or due again after a failure.
const pollInterval = time.Second

// storeTimeout bounds the outbox calls made outside a device request.
const storeTimeout = 30 * time.Second

// SignatureHeader carries base64(HMAC-SHA256(body)) when a key is set.
const SignatureHeader = "X-Hmac-Signature"

var (
	// ErrOutbox means an event could not be written to the outbox and
	// was dropped.
	ErrOutbox = errors.New("webhook outbox write failed")

	// ErrClosed means an event arrived after Close and was dropped.
	ErrClosed = errors.New("webhook closed")
)

// Store is what the webhook needs of the storage: the TokenUpdate tally
// for TokenUpdate events, and the outbox.
type Store interface {
	storage.TokenUpdateTallyStore
	storage.OutboxStore
}

// Webhook is a service.CheckinAndCommandService that turns every request
// into an event and delivers it to a URL.
type Webhook struct {
	url       string
	store     Store
	tally     storage.TokenUpdateTallyStore
	client    *http.Client
	logger    log.Logger
	hmacKey   []byte
	observe   Observer
	timeout   time.Duration
	retries   int
	backoff   time.Duration
	workers   int
	size      int
	maxAge    time.Duration
	lease     time.Duration
	trimEvery time.Duration
	owner     string
	now       func() time.Time

	// ctx is cancelled when Close gives up waiting: in-flight posts and
	// back-offs end at once and their events go back to the outbox.
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.RWMutex // guards closed against appends
	closed bool
	wake   chan struct{} // an event was appended
	stop   chan struct{} // closed by Close: drain, then end
	done   chan struct{} // closed when the dispatcher has ended
	// failing counts rounds in a row that had a failed delivery; it
	// lengthens the wait before failed events are tried again.
	failing atomic.Int32
}

// Option configures a Webhook.
type Option func(*Webhook)

// Outcome is what became of one event, or of one failed attempt.
type Outcome string

// The outcomes an Observer hears of.
const (
	Delivered      Outcome = "delivered"   // the endpoint accepted the event
	Retried        Outcome = "retried"     // an attempt failed; another follows
	Failed         Outcome = "failed"      // the attempts of a round failed (retried later unless refused with 4xx)
	DroppedFull    Outcome = "queue_full"  // dropped from the outbox beyond its size bound
	DroppedExpired Outcome = "expired"     // dropped from the outbox beyond its age bound
	DroppedStore   Outcome = "store_error" // the outbox write failed: never sent
	DroppedClosed  Outcome = "closed"      // it came after or during Close: never sent
)

// Observer hears of every outcome, for metrics. It must not block.
type Observer interface {
	ObserveWebhook(Outcome)
}

// ObserverFunc adapts a function to Observer.
type ObserverFunc func(Outcome)

// ObserveWebhook calls f.
func (f ObserverFunc) ObserveWebhook(o Outcome) { f(o) }

// WithObserver sets the observer of delivery outcomes.
func WithObserver(o Observer) Option { return func(w *Webhook) { w.observe = o } }

// WithLogger sets the logger of delivery failures.
func WithLogger(l log.Logger) Option { return func(w *Webhook) { w.logger = l } }

// WithHMACKey signs every body: header X-Hmac-Signature holds the
// base64-encoded HMAC-SHA256 of the body under key.
func WithHMACKey(key []byte) Option { return func(w *Webhook) { w.hmacKey = key } }

// WithTimeout bounds each delivery attempt (connect, send, answer).
func WithTimeout(d time.Duration) Option { return func(w *Webhook) { w.timeout = d } }

// WithRetries sets how many times a failed delivery is retried (0: never)
// before the event goes back to the outbox for a later round.
func WithRetries(n int) Option { return func(w *Webhook) { w.retries = n } }

// WithBackoff sets the wait before the first retry; it doubles (with
// jitter) for every further one, up to 30 s.
func WithBackoff(d time.Duration) Option { return func(w *Webhook) { w.backoff = d } }

// WithWorkers sets how many deliveries run at once.
func WithWorkers(n int) Option { return func(w *Webhook) { w.workers = n } }

// WithQueueSize bounds the outbox: beyond n events the oldest are dropped
// (logged and counted). 0 or less: no bound by size.
func WithQueueSize(n int) Option { return func(w *Webhook) { w.size = n } }

// WithMaxAge drops events older than d from the outbox (logged and
// counted). 0 or less: no bound by age.
func WithMaxAge(d time.Duration) Option { return func(w *Webhook) { w.maxAge = d } }

// WithLease sets how long a claimed event is reserved for this server:
// should the server die while delivering it, another one (or this one
// restarted) sends it after the lease. It must exceed the time of a
// round of deliveries.
func WithLease(d time.Duration) Option { return func(w *Webhook) { w.lease = d } }

// withTrimInterval sets how often the outbox bounds are applied (tests).
func withTrimInterval(d time.Duration) Option { return func(w *Webhook) { w.trimEvery = d } }

// New returns a Webhook posting to url and starts its dispatcher; call
// Close to stop it. store gives the token_update_tally of TokenUpdate
// events (read after the core service has stored the TokenUpdate) and
// keeps the outbox.
func New(url string, store Store, opts ...Option) *Webhook {
	w := &Webhook{
		url:       url,
		store:     store,
		tally:     store,
		logger:    log.Nop,
		observe:   ObserverFunc(func(Outcome) {}),
		timeout:   DefaultTimeout,
		retries:   DefaultRetries,
		backoff:   DefaultBackoff,
		workers:   DefaultWorkers,
		size:      DefaultQueueSize,
		maxAge:    DefaultMaxAge,
		lease:     DefaultLease,
		trimEvery: 10 * time.Second,
		owner:     newOwner(),
		now:       func() time.Time { return time.Now().UTC() },
		wake:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	for _, o := range opts {
		o(w)
	}
	w.workers = max(w.workers, 1)
	w.retries = max(w.retries, 0)
	w.lease = max(w.lease, time.Second)
	w.client = &http.Client{
		Timeout: w.timeout,
		// A redirect answer is a misconfigured URL: report it rather
		// than turning the POST into a GET elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	go w.dispatch()
	return w
}

// newOwner names this server's leases: random, so that two servers (or
// one restarted) never share a name.
func newOwner() string {
	b := make([]byte, 8)
	rand.Read(b)
	return "webhook-" + hex.EncodeToString(b)
}

// Close stops accepting events and delivers what the outbox holds and is
// due (events waiting after a failure are left for later) until it is
// empty or ctx is done. In the latter case it aborts the deliveries in
// flight, returns their events to the outbox and returns ctx's error.
// Events still in the outbox are logged by count: a persistent backend
// keeps them for the next start. Close is safe to call more than once.
func (w *Webhook) Close(ctx context.Context) error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.stop)
	}
	w.mu.Unlock()
	var err error
	select {
	case <-w.done:
	case <-ctx.Done():
		err = ctx.Err()
		w.cancel()
		<-w.done
	}
	w.cancel()
	w.client.CloseIdleConnections()
	return err
}

// key returns the outbox key of r: its device-channel ID, so that one
// device's events keep their order.
func key(r *mdm.Request) string {
	if r.EnrollID == nil {
		return ""
	}
	if r.EnrollID.ParentID != "" {
		return r.EnrollID.ParentID
	}
	return r.EnrollID.ID
}

// enqueue encodes ev and appends it to the outbox. A failed write is
// counted and returned (the multi service logs it); the device's answer
// does not change.
func (w *Webhook) enqueue(r *mdm.Request, ev *Event) error {
	body, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encoding %s event: %w", ev.Topic, err)
	}
	ctx := context.Background()
	if r.Context != nil {
		// The event is recorded even if the device hangs up now.
		ctx = context.WithoutCancel(r.Context)
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		w.observe.ObserveWebhook(DroppedClosed)
		return fmt.Errorf("%w: dropped %s event", ErrClosed, ev.Topic)
	}
	if err := w.store.Append(ctx, []storage.OutboxEvent{{Key: key(r), Body: body}}); err != nil {
		w.observe.ObserveWebhook(DroppedStore)
		return fmt.Errorf("%w: dropped %s event: %w", ErrOutbox, ev.Topic, err)
	}
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return nil
}

// batchSize is how many events one round claims.
func (w *Webhook) batchSize() int { return max(4*w.workers, 16) }

// dispatch runs rounds of claim and delivery until Close, then drains.
// Beside it a trimmer applies the outbox bounds, even while a round
// waits on a slow endpoint.
func (w *Webhook) dispatch() {
	defer close(w.done)
	trimmed := make(chan struct{})
	go w.trimLoop(trimmed)
	defer func() { <-trimmed }()
	poll := time.NewTicker(pollInterval)
	defer poll.Stop()
	draining := false
	for {
		n, err := w.round()
		switch {
		case w.ctx.Err() != nil:
			w.leftBehind()
			return
		case draining && (n == 0 || err != nil):
			w.leftBehind()
			return
		case n > 0:
			// Deliveries expose the next event of their devices.
			continue
		}
		select {
		case <-w.stop:
			draining = true
		case <-w.wake:
		case <-poll.C:
		}
	}
}

// trimLoop trims the outbox now, every trimEvery, and at Close.
func (w *Webhook) trimLoop(done chan<- struct{}) {
	defer close(done)
	if w.trimEvery <= 0 {
		return
	}
	t := time.NewTicker(w.trimEvery)
	defer t.Stop()
	for {
		w.trim()
		select {
		case <-t.C:
		case <-w.stop:
			// Once more, so that a server stops within the bounds.
			w.trim()
			return
		}
	}
}

// leftBehind logs how many events stay in the outbox at shutdown.
func (w *Webhook) leftBehind() {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	if st, err := w.store.OutboxStats(ctx); err == nil && st.Depth > 0 {
		w.logger.Info("msg", "webhook events left in the outbox", "count", st.Depth)
	}
}

// trim applies the outbox bounds, logging and counting what they drop.
func (w *Webhook) trim() {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	if w.size > 0 {
		w.trimBy(ctx, w.size, time.Time{}, DroppedFull)
	}
	if w.maxAge > 0 {
		w.trimBy(ctx, 0, time.Now().Add(-w.maxAge), DroppedExpired)
	}
}

func (w *Webhook) trimBy(ctx context.Context, size int, before time.Time, o Outcome) {
	n, err := w.store.Trim(ctx, size, before)
	if err != nil {
		w.logger.Info("msg", "trimming webhook outbox", "err", err)
		return
	}
	if n > 0 {
		w.logger.Info("msg", "webhook events dropped", "reason", string(o), "count", n)
		for range n {
			w.observe.ObserveWebhook(o)
		}
	}
}

// round claims a batch and delivers it with the worker pool. It returns
// how many events it claimed.
func (w *Webhook) round() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	events, err := w.store.Claim(ctx, w.owner, w.batchSize(), w.lease)
	cancel()
	if err != nil {
		w.logger.Info("msg", "claiming webhook events", "err", err)
		return 0, err
	}
	if len(events) == 0 {
		return 0, nil
	}
	// One event per device: they may go out in parallel. After a
	// delivery fails for good the endpoint is taken as down: the events
	// not yet started wait for the next round rather than fail too.
	var (
		mu      sync.Mutex
		done    []int64 // delivered, or refused for good
		release []int64
		down    atomic.Bool
		next    atomic.Int32
		wg      sync.WaitGroup
	)
	for range min(w.workers, len(events)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(events) {
					return
				}
				ev := &events[i]
				finished := false
				if !down.Load() && w.ctx.Err() == nil {
					var retryable bool
					finished, retryable = w.deliver(ev)
					if !finished && retryable {
						down.Store(true)
					}
				}
				mu.Lock()
				if finished {
					done = append(done, ev.ID)
				} else {
					release = append(release, ev.ID)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()

	ctx, cancel = context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	if len(done) > 0 {
		if err := w.store.Delete(ctx, done); err != nil {
			// They will be sent again after their lease: at least once.
			w.logger.Info("msg", "deleting delivered webhook events", "count", len(done), "err", err)
		}
	}
	if len(release) > 0 {
		retryAt := time.Now()
		if down.Load() && w.ctx.Err() == nil {
			n := int(w.failing.Add(1))
			retryAt = retryAt.Add(max(min(w.backoffFor(w.retries+n-1), maxBackoff), minRedelivery))
		}
		if err := w.store.Release(ctx, w.owner, release, retryAt); err != nil {
			w.logger.Info("msg", "releasing webhook events", "count", len(release), "err", err)
		}
	} else {
		w.failing.Store(0)
	}
	return len(events), nil
}

// describe returns the log fields of an event body: topic, enrollment ID
// and event ID (the request's trace ID). Only failures pay for it.
func describe(body []byte) []any {
	var ev struct {
		Topic   string `json:"topic"`
		EventID string `json:"event_id"`
		Checkin *struct {
			IDs *IDs `json:"ids"`
		} `json:"checkin_event"`
		Ack *struct {
			IDs *IDs `json:"ids"`
		} `json:"acknowledge_event"`
	}
	json.Unmarshal(body, &ev)
	var id string
	switch {
	case ev.Checkin != nil && ev.Checkin.IDs != nil:
		id = ev.Checkin.IDs.ID
	case ev.Ack != nil && ev.Ack.IDs != nil:
		id = ev.Ack.IDs.ID
	}
	return []any{"topic", ev.Topic, "id", id, "trace_id", ev.EventID}
}

// deliver posts ev, retrying as configured, and logs a final failure.
// finished reports that the event is done with (delivered, or refused
// with an answer retrying would not change); retryable that it failed
// in a way a later round may fix.
func (w *Webhook) deliver(ev *storage.OutboxEvent) (finished, retryable bool) {
	for attempt := 0; ; attempt++ {
		retry, err := w.post(ev.Body)
		if err == nil {
			w.observe.ObserveWebhook(Delivered)
			return true, false
		}
		if !retry || attempt >= w.retries || w.ctx.Err() != nil {
			if w.ctx.Err() != nil {
				// Shutting down: back to the outbox, not a failure.
				return false, false
			}
			w.observe.ObserveWebhook(Failed)
			w.logger.With(describe(ev.Body)...).Info("msg", "webhook delivery failed", "attempts", attempt+1, "err", err)
			return !retry, retry
		}
		t := time.NewTimer(w.backoffFor(attempt))
		select {
		case <-t.C:
			w.observe.ObserveWebhook(Retried)
		case <-w.ctx.Done():
			t.Stop()
			return false, false
		}
	}
}

// backoffFor returns the wait after failed attempt n (0-based): the base
// doubled n times, capped, plus up to half again of random jitter.
func (w *Webhook) backoffFor(n int) time.Duration {
	d := w.backoff
	for i := 0; i < n && d < maxBackoff; i++ {
		d *= 2
	}
	d = min(d, maxBackoff)
	if d > 1 {
		d += mathrand.N(d / 2)
	}
	return d
}

// errStatus is a non-2xx answer of the endpoint.
type errStatus struct{ status int }

func (e *errStatus) Error() string { return fmt.Sprintf("endpoint answered %d", e.status) }

// post sends one attempt. retry reports whether a failure is worth
// retrying: connection errors and 5xx answers are.
func (w *Webhook) post(body []byte) (retry bool, err error) {
	req, err := http.NewRequestWithContext(w.ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("building request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "nanomdm-webhook")
	if len(w.hmacKey) > 0 {
		req.Header.Set(SignatureHeader, sign(w.hmacKey, body))
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return true, err
	}
	// Drain a little of the answer so the connection can be reused.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return false, nil
	case resp.StatusCode >= 500:
		return true, &errStatus{resp.StatusCode}
	}
	return false, &errStatus{resp.StatusCode}
}

// sign returns base64(HMAC-SHA256(key, body)).
func sign(key, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write(body)
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// Checkin implements service.Checkin: every check-in message becomes an
// event of topic "mdm." plus its MessageType. A TokenUpdate event carries
// the enrollment's token_update_tally; if the tally cannot be read the
// event is sent without it and the read error is returned. As a secondary
// service it answers nothing.
func (w *Webhook) Checkin(r *mdm.Request, msg any) ([]byte, error) {
	messageType, e := mdm.MessageTypeOf(msg), mdm.EnrollmentOf(msg)
	if messageType == "" || e == nil {
		return nil, service.UnrecognizedCheckin(msg)
	}
	var tally *int
	var tallyErr error
	if _, ok := msg.(*mdm.TokenUpdate); ok && r.EnrollID != nil {
		n, err := w.tally.RetrieveTokenUpdateTally(r.Context, r.EnrollID.ID)
		if err != nil {
			tallyErr = fmt.Errorf("retrieving token update tally: %w", err)
		} else {
			tally = &n
		}
	}
	err := w.enqueue(r, newCheckinEvent(r, "mdm."+messageType, e, mdm.RawOf(msg), tally, w.now()))
	return nil, errors.Join(tallyErr, err)
}

// CommandAndReportResults implements service.CommandAndReportResults:
// every report, Idle included, becomes an mdm.Connect event. As a
// secondary service it answers no command.
func (w *Webhook) CommandAndReportResults(r *mdm.Request, res *mdm.CommandResults) (*mdm.Command, error) {
	return nil, w.enqueue(r, newAcknowledgeEvent(r, res, w.now()))
}
