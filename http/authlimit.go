package http

import (
	"net"
	nethttp "net/http"
	"strconv"
	"sync"
	"time"
)

// DefaultAuthFailWindow is the period over which an AuthFailureLimiter
// counts failures unless configured otherwise.
const DefaultAuthFailWindow = time.Minute

// maxTrackedClients bounds the client addresses an AuthFailureLimiter
// remembers. When that many are tracked and none has expired, further new
// addresses share one counter, so a flood of addresses costs bounded
// memory (and locks out only the newcomers together).
const maxTrackedClients = 10_000

// overflowKey is the shared counter of addresses beyond maxTrackedClients.
const overflowKey = "\x00overflow"

// AuthFailureLimiter locks a client address out of Basic-authenticated
// routes after too many failed attempts. A client that fails limit times
// within window (counted from its first failure) is answered 429 for the
// rest of that window, whatever credentials it sends: otherwise guessing
// could continue at full speed. A successful authentication clears the
// client's count. The client is the host of the connection's remote
// address; behind a reverse proxy that is the proxy, so all its clients
// share one count. Forwarded-for headers are not trusted, as any client
// can set them. It is safe for concurrent use.
type AuthFailureLimiter struct {
	limit  int
	window time.Duration
	now    func() time.Time

	mu      sync.Mutex
	clients map[string]*authFailures
}

type authFailures struct {
	n     int
	start time.Time
}

// NewAuthFailureLimiter returns a limiter allowing limit failures per
// client within window. A limit of zero or less disables it (nil is
// returned, which BasicAuthMiddleware accepts); a window of zero or less
// means DefaultAuthFailWindow.
func NewAuthFailureLimiter(limit int, window time.Duration) *AuthFailureLimiter {
	if limit <= 0 {
		return nil
	}
	if window <= 0 {
		window = DefaultAuthFailWindow
	}
	return &AuthFailureLimiter{limit: limit, window: window, now: time.Now, clients: map[string]*authFailures{}}
}

// clientKey is the address a request's failures are counted under.
func clientKey(r *nethttp.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// lockedFor returns how much longer key is locked out, or 0.
func (l *AuthFailureLimiter) lockedFor(key string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.lookup(key)
	if f == nil || f.n < l.limit {
		return 0
	}
	left := f.start.Add(l.window).Sub(l.now())
	if left <= 0 {
		return 0
	}
	return left
}

// lookup returns the live counter of key (or of the overflow bucket when
// key is untracked and the table is full), or nil. l.mu is held.
func (l *AuthFailureLimiter) lookup(key string) *authFailures {
	f, ok := l.clients[key]
	if !ok && len(l.clients) >= maxTrackedClients {
		f = l.clients[overflowKey]
	}
	if f != nil && l.now().Sub(f.start) >= l.window {
		return nil
	}
	return f
}

// fail counts a failure of key and reports whether this failure locked
// key out.
func (l *AuthFailureLimiter) fail(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if f := l.lookup(key); f != nil {
		f.n++
		return f.n == l.limit
	}
	if _, tracked := l.clients[key]; !tracked && len(l.clients) >= maxTrackedClients {
		for k, f := range l.clients {
			if now.Sub(f.start) >= l.window {
				delete(l.clients, k)
			}
		}
		if len(l.clients) >= maxTrackedClients {
			key = overflowKey
		}
	}
	l.clients[key] = &authFailures{n: 1, start: now}
	return l.limit == 1
}

// succeed clears the failures of key.
func (l *AuthFailureLimiter) succeed(key string) {
	l.mu.Lock()
	delete(l.clients, key)
	l.mu.Unlock()
}

// writeLocked answers 429 with a Retry-After of the remaining lock-out.
func writeLocked(w nethttp.ResponseWriter, left time.Duration) {
	secs := int((left + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
	WriteJSONError(w, nethttp.StatusTooManyRequests, errTooManyFailures)
}

// LockedOut returns how much longer the client of r is locked out, or 0.
// A nil limiter locks no one out. For login forms that share the lock-out
// of the Basic-authenticated routes.
func (l *AuthFailureLimiter) LockedOut(r *nethttp.Request) time.Duration {
	if l == nil {
		return 0
	}
	return l.lockedFor(clientKey(r))
}

// Failed counts a failed authentication of the client of r.
func (l *AuthFailureLimiter) Failed(r *nethttp.Request) {
	if l != nil {
		l.fail(clientKey(r))
	}
}

// Succeeded clears the failures of the client of r.
func (l *AuthFailureLimiter) Succeeded(r *nethttp.Request) {
	if l != nil {
		l.succeed(clientKey(r))
	}
}
