// Package webhook sends a MicroMDM-compatible JSON event to an HTTP
// endpoint for every check-in message and command report. It runs as a
// secondary service (see service/multi): the device's answer never
// depends on it.
//
// Delivery is asynchronous. Events are queued in a bounded queue and
// posted by a fixed pool of workers, so a slow or dead endpoint never
// holds a device request. Events of one device (its device channel and its
// user channels) always go to the same worker and so arrive in order. A
// delivery is retried with exponential back-off on connection errors and
// 5xx answers, a bounded number of times. When the queue is full the event
// is dropped and the drop is reported as the method's error.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
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
	DefaultQueueSize = 1024
)

// maxBackoff caps the wait between two attempts.
const maxBackoff = 30 * time.Second

// SignatureHeader carries base64(HMAC-SHA256(body)) when a key is set.
const SignatureHeader = "X-Hmac-Signature"

var (
	// ErrQueueFull means an event was dropped because every queued slot
	// was taken (the endpoint is slower than the events arrive).
	ErrQueueFull = errors.New("webhook queue full")

	// ErrClosed means an event arrived after Close and was dropped.
	ErrClosed = errors.New("webhook closed")
)

// Webhook is a service.CheckinAndCommandService that turns every request
// into an event and delivers it to a URL.
type Webhook struct {
	url     string
	tally   storage.TokenUpdateTallyStore
	client  *http.Client
	logger  log.Logger
	hmacKey []byte
	observe Observer
	timeout time.Duration
	retries int
	backoff time.Duration
	workers int
	size    int
	now     func() time.Time

	// ctx is cancelled when Close gives up waiting: in-flight posts and
	// back-offs end at once and the rest of the queue is dropped.
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.RWMutex // guards closed and sends on queues
	closed bool
	queues []chan *job
	wg     sync.WaitGroup
}

// job is one encoded event waiting for delivery.
type job struct {
	body   []byte
	logger log.Logger
}

// Option configures a Webhook.
type Option func(*Webhook)

// Outcome is what became of one event, or of one failed attempt.
type Outcome string

// The outcomes an Observer hears of.
const (
	Delivered     Outcome = "delivered"  // the endpoint accepted the event
	Retried       Outcome = "retried"    // an attempt failed; another follows
	Failed        Outcome = "failed"     // the event was given up after its attempts
	DroppedFull   Outcome = "queue_full" // the queue was full: never sent
	DroppedClosed Outcome = "closed"     // it came after or during Close: never sent
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

// WithRetries sets how many times a failed delivery is retried (0: never).
func WithRetries(n int) Option { return func(w *Webhook) { w.retries = n } }

// WithBackoff sets the wait before the first retry; it doubles (with
// jitter) for every further one, up to 30 s.
func WithBackoff(d time.Duration) Option { return func(w *Webhook) { w.backoff = d } }

// WithWorkers sets how many deliveries run at once.
func WithWorkers(n int) Option { return func(w *Webhook) { w.workers = n } }

// WithQueueSize bounds how many events wait for delivery in total.
func WithQueueSize(n int) Option { return func(w *Webhook) { w.size = n } }

// New returns a Webhook posting to url and starts its workers; call Close
// to stop them. tally gives the token_update_tally of TokenUpdate events
// (read after the core service has stored the TokenUpdate).
func New(url string, tally storage.TokenUpdateTallyStore, opts ...Option) *Webhook {
	w := &Webhook{
		url:     url,
		tally:   tally,
		logger:  log.Nop,
		observe: ObserverFunc(func(Outcome) {}),
		timeout: DefaultTimeout,
		retries: DefaultRetries,
		backoff: DefaultBackoff,
		workers: DefaultWorkers,
		size:    DefaultQueueSize,
		now:     func() time.Time { return time.Now().UTC() },
	}
	for _, o := range opts {
		o(w)
	}
	w.workers = max(w.workers, 1)
	w.retries = max(w.retries, 0)
	perWorker := max(w.size/w.workers, 1)
	w.client = &http.Client{
		Timeout: w.timeout,
		// A redirect answer is a misconfigured URL: report it rather
		// than turning the POST into a GET elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	w.queues = make([]chan *job, w.workers)
	for i := range w.queues {
		w.queues[i] = make(chan *job, perWorker)
		w.wg.Add(1)
		go w.work(w.queues[i])
	}
	return w
}

// Close stops accepting events and waits until the queued ones are
// delivered or ctx is done. In the latter case it aborts the deliveries
// in flight, drops what is still queued (logging how many) and returns
// ctx's error. Close is safe to call more than once.
func (w *Webhook) Close(ctx context.Context) error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		for _, q := range w.queues {
			close(q)
		}
	}
	w.mu.Unlock()
	done := make(chan struct{})
	go func() { w.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		w.cancel()
		<-done
	}
	w.cancel()
	w.client.CloseIdleConnections()
	return err
}

// shard picks the queue of the device that r belongs to, so that one
// device's events keep their order.
func (w *Webhook) shard(r *mdm.Request) int {
	if len(w.queues) == 1 || r.EnrollID == nil {
		return 0
	}
	key := r.EnrollID.ParentID
	if key == "" {
		key = r.EnrollID.ID
	}
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % uint32(len(w.queues)))
}

// enqueue encodes ev and queues it without waiting.
func (w *Webhook) enqueue(r *mdm.Request, ev *Event) error {
	body, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encoding %s event: %w", ev.Topic, err)
	}
	var id string
	if r.EnrollID != nil {
		id = r.EnrollID.ID
	}
	j := &job{body: body, logger: w.logger.With("topic", ev.Topic, "id", id, "trace_id", ev.EventID)}
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		w.observe.ObserveWebhook(DroppedClosed)
		return fmt.Errorf("%w: dropped %s event", ErrClosed, ev.Topic)
	}
	select {
	case w.queues[w.shard(r)] <- j:
		return nil
	default:
		w.observe.ObserveWebhook(DroppedFull)
		return fmt.Errorf("%w: dropped %s event", ErrQueueFull, ev.Topic)
	}
}

func (w *Webhook) work(q <-chan *job) {
	defer w.wg.Done()
	dropped := 0
	for j := range q {
		if w.ctx.Err() != nil {
			dropped++
			w.observe.ObserveWebhook(DroppedClosed)
			continue
		}
		w.deliver(j)
	}
	if dropped > 0 {
		w.logger.Info("msg", "webhook events dropped at shutdown", "count", dropped)
	}
}

// deliver posts j, retrying as configured, and logs a final failure.
func (w *Webhook) deliver(j *job) {
	for attempt := 0; ; attempt++ {
		retry, err := w.post(j.body)
		if err == nil {
			w.observe.ObserveWebhook(Delivered)
			return
		}
		if !retry || attempt >= w.retries || w.ctx.Err() != nil {
			w.observe.ObserveWebhook(Failed)
			j.logger.Info("msg", "webhook delivery failed", "attempts", attempt+1, "err", err)
			return
		}
		t := time.NewTimer(w.backoffFor(attempt))
		select {
		case <-t.C:
			w.observe.ObserveWebhook(Retried)
		case <-w.ctx.Done():
			t.Stop()
			w.observe.ObserveWebhook(Failed)
			j.logger.Info("msg", "webhook delivery failed", "attempts", attempt+1, "err", err)
			return
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
		d += rand.N(d / 2)
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
