// Package ui is the operator console: server-rendered pages under /ui/
// that show the fleet (counts, enrollments, queues, command results, push
// certificates) and act on it (push, send a command, clear a queue,
// upload a push certificate). Reads go to the storage inspection roles;
// every action calls the operator API's own handler in process, so the
// console follows exactly the API's rules and limits. Templates and
// assets are embedded; the pages work without JavaScript, which only
// shows times in the viewer's zone and asks before destructive actions.
package ui

import (
	"bytes"
	"context"
	"crypto/tls"
	"embed"
	"html/template"
	"io/fs"
	"net/http"
	"strconv"
	"time"

	mdmhttp "github.com/nanomdm/nanomdm/http"
	"github.com/nanomdm/nanomdm/log"
	"github.com/nanomdm/nanomdm/metrics"
	"github.com/nanomdm/nanomdm/storage"
)

// Prefix is where the console is mounted.
const Prefix = "/ui"

const (
	// DefaultBodyLimit bounds a form post (a raw command plist, a push
	// certificate upload).
	DefaultBodyLimit = 4 << 20
	// multipartMemory is how much of a multipart form is kept in memory;
	// the body limit keeps the rest from growing without bound.
	multipartMemory = 1 << 20
	// maxLoginBytes bounds the sign-in form.
	maxLoginBytes = 8 << 10
	// pageSize is the number of enrollments on one list page.
	pageSize = 50
)

//go:embed static
var staticFS embed.FS

// Store is what the console reads.
type Store interface {
	storage.EnrollmentLister
	storage.QueueLister
	storage.CommandResultLister
	storage.FleetCounter
	storage.PushStore
	storage.PushCertLister
	storage.EnrollmentDetailer
	RetrievePushCert(ctx context.Context, topic string) (*tls.Certificate, string, error)
}

// Actions are the operator API handlers the console's buttons call, in
// process and without their authentication (the console has its own):
// the handlers as mounted under /v1, before any StripPrefix.
type Actions struct {
	// Enqueue is api.EnqueueHandler: it gets the enrollment ID as its
	// whole path and the command plist as its body.
	Enqueue http.Handler
	// Push is api.PushHandler: the enrollment ID as its whole path.
	Push http.Handler
	// Queue is api.QueueHandler: DELETE with the path value id.
	Queue http.Handler
	// Remove is api.RemoveQueuedCommandHandler: DELETE with the path
	// values id and uuid.
	Remove http.Handler
	// PushCert is api.PushCertHandler: PUT with the PEM upload.
	PushCert http.Handler
}

// ReportHistory counts recent command reports, for the overview chart.
type ReportHistory interface {
	// RecentReports returns the reports of the last hours, oldest first.
	RecentReports(now time.Time) []metrics.ReportHour
}

// Console serves the pages. Build it with New.
type Console struct {
	store     Store
	actions   Actions
	apiKey    string
	key       authKey
	limiter   *mdmhttp.AuthFailureLimiter
	logger    log.Logger
	version   string
	backend   string
	history   ReportHistory
	lifetime  time.Duration
	bodyLimit int64
	now       func() time.Time
	pages     map[string]*template.Template
	mux       *http.ServeMux
}

// Option configures a Console.
type Option func(*Console)

// WithLogger sets the logger.
func WithLogger(l log.Logger) Option { return func(c *Console) { c.logger = l } }

// WithAuthFailureLimiter makes failed sign-ins count in l, the limiter of
// the API routes, and locks out the clients it locks out.
func WithAuthFailureLimiter(l *mdmhttp.AuthFailureLimiter) Option {
	return func(c *Console) { c.limiter = l }
}

// WithServerInfo names the server version and storage backend shown on
// the overview.
func WithServerInfo(version, backend string) Option {
	return func(c *Console) { c.version, c.backend = version, backend }
}

// WithReportHistory sets where the overview reads recent command
// reports from.
func WithReportHistory(h ReportHistory) Option { return func(c *Console) { c.history = h } }

// WithBodyLimit bounds form posts.
func WithBodyLimit(n int64) Option { return func(c *Console) { c.bodyLimit = n } }

// withClock sets the clock (tests).
func withClock(now func() time.Time) Option { return func(c *Console) { c.now = now } }

// New returns the console. apiKey is the API key operators sign in with.
func New(store Store, apiKey string, actions Actions, opts ...Option) *Console {
	c := &Console{
		store: store, actions: actions, apiKey: apiKey, key: newAuthKey(apiKey),
		logger: log.Nop, lifetime: DefaultSessionLifetime, bodyLimit: DefaultBodyLimit, now: time.Now,
	}
	for _, f := range opts {
		f(c)
	}
	c.pages = parsePages()
	static, _ := fs.Sub(staticFS, "static")
	m := http.NewServeMux()
	m.Handle("GET "+Prefix+"/static/", http.StripPrefix(Prefix+"/static/", staticHandler(http.FileServerFS(static))))
	m.HandleFunc("GET "+Prefix+"/login", c.loginPage)
	m.HandleFunc("POST "+Prefix+"/login", c.login)
	m.Handle("POST "+Prefix+"/logout", c.requireAuth(c.logout))
	m.Handle("GET "+Prefix+"/{$}", c.requireAuth(c.overview))
	m.Handle("GET "+Prefix+"/enrollments", c.requireAuth(c.enrollments))
	m.Handle("GET "+Prefix+"/enrollments/{id}", c.requireAuth(c.enrollment))
	m.Handle("POST "+Prefix+"/enrollments/{id}/push", c.requireAuth(c.push))
	m.Handle("POST "+Prefix+"/enrollments/{id}/commands", c.requireAuth(c.sendCommand))
	m.Handle("POST "+Prefix+"/enrollments/{id}/queue/clear", c.requireAuth(c.clearQueue))
	m.Handle("POST "+Prefix+"/enrollments/{id}/queue/{uuid}/remove", c.requireAuth(c.removeQueued))
	m.Handle("GET "+Prefix+"/commands/{uuid}", c.requireAuth(c.command))
	m.Handle("GET "+Prefix+"/pushcert", c.requireAuth(c.pushCert))
	m.Handle("POST "+Prefix+"/pushcert", c.requireAuth(c.uploadPushCert))
	m.Handle(Prefix+"/", c.requireAuth(func(w http.ResponseWriter, r *http.Request, p *page) {
		c.errorPage(w, r, http.StatusNotFound, "There is no such page.")
	}))
	c.mux = m
	return c
}

// ServeHTTP serves the console with its security headers.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "+
		"form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
	c.mux.ServeHTTP(w, r)
}

// staticHandler lets browsers keep assets for an hour.
func staticHandler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		next.ServeHTTP(w, r)
	})
}

// page is what every page template gets besides its own data.
type page struct {
	Title   string
	Nav     string // the section highlighted in the header
	CSRF    string
	Session bool // signed in with a cookie (offer to sign out)
	Version string
	Flash   string
	Error   string
	Data    any
}

// render executes page template name into a buffer first, so a template
// error answers 500 rather than half a page.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, p *page, data any) {
	p.Data = data
	var buf bytes.Buffer
	if err := c.pages[name].ExecuteTemplate(&buf, "layout", p); err != nil {
		log.From(r.Context(), c.logger).Info("msg", "rendering console page", "page", name, "err", err)
		http.Error(w, "internal error rendering page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// errorPage answers a page that says msg.
func (c *Console) errorPage(w http.ResponseWriter, r *http.Request, status int, msg string) {
	c.render(w, r, status, "error", &page{Title: http.StatusText(status), Version: c.version, Error: msg}, nil)
}

// serverError logs err and answers 500.
func (c *Console) serverError(w http.ResponseWriter, r *http.Request, what string, err error) {
	log.From(r.Context(), c.logger).Info("msg", what, "err", err)
	c.errorPage(w, r, http.StatusInternalServerError, what+": "+err.Error())
}

func itoa(n int) string { return strconv.Itoa(n) }
