// Command nanomdm is the MDM server: it answers Apple devices on /mdm (and
// /checkin) and operators on the /v1 API. TLS is terminated in front of it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/nanomdm/nanomdm/certverify"
	"github.com/nanomdm/nanomdm/cmd/internal/cli"
	mdmhttp "github.com/nanomdm/nanomdm/http"
	"github.com/nanomdm/nanomdm/http/api"
	httpmdm "github.com/nanomdm/nanomdm/http/mdm"
	"github.com/nanomdm/nanomdm/http/ui"
	"github.com/nanomdm/nanomdm/log"
	"github.com/nanomdm/nanomdm/log/gokit"
	"github.com/nanomdm/nanomdm/metrics"
	"github.com/nanomdm/nanomdm/push/nanopush"
	pushsvc "github.com/nanomdm/nanomdm/push/service"
	"github.com/nanomdm/nanomdm/service"
	"github.com/nanomdm/nanomdm/service/certauth"
	"github.com/nanomdm/nanomdm/service/dump"
	"github.com/nanomdm/nanomdm/service/multi"
	"github.com/nanomdm/nanomdm/service/nanomdm"
	"github.com/nanomdm/nanomdm/service/webhook"
	"github.com/nanomdm/nanomdm/storage"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "unknown"

func main() {
	cli.Main("nanomdm", func(ctx context.Context) error {
		return run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr)
	})
}

// config is every flag of the server.
type config struct {
	listen          string
	apiKey          string
	caPath          string
	intPath         string
	certHeader      string
	storage         cli.StringList
	storageDSN      cli.StringList
	dsn             cli.StringList // deprecated -dsn
	storageOptions  cli.StringList
	checkin         bool
	disableMDM      bool
	dump            bool
	debug           bool
	version         bool
	uaZLDC          bool
	retro           bool
	migration       bool
	ui              bool
	bodyLimit       int64
	bodyBudget      int64
	apiMaxIDs       int
	apiFailLimit    int
	apiFailWindow   time.Duration
	readTimeout     time.Duration
	readHeaderTO    time.Duration
	writeTimeout    time.Duration
	idleTimeout     time.Duration
	shutdownTimeout time.Duration
	maxHeaderBytes  int
	pprofAddr       string
	metricsListen   string
	push            pushConfig
	integrations    integrationsConfig
	enroll          enrollConfig
}

func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = cli.Usage(fs, stderr)
	fs.StringVar(&c.listen, "listen", ":9000", "HTTP listen address")
	fs.StringVar(&c.apiKey, "api", "", "API key; empty turns off every /v1 route and /migration")
	fs.StringVar(&c.caPath, "ca", "", "PEM file of CA certificate(s) that issue device identities (required)")
	fs.StringVar(&c.intPath, "intermediate", "", "PEM file of intermediate certificates for building device chains")
	fs.StringVar(&c.certHeader, "cert-header", "", "read the device certificate from this header instead of Mdm-Signature (':' prefix = RFC 9440, else URL-escaped PEM)")
	fs.Var(&c.storage, "storage", "storage backend: file, inmem, mysql, pgsql (repeat for multi-storage; default file)")
	fs.Var(&c.storageDSN, "storage-dsn", "storage data source name (file: directory, default \"db\"); repeat with -storage")
	fs.Var(&c.dsn, "dsn", "deprecated alias of -storage-dsn")
	fs.Var(&c.storageOptions, "storage-options", "storage backend options; repeat with -storage")
	fs.BoolVar(&c.checkin, "checkin", false, "separate /checkin endpoint for check-ins; /mdm then takes only command reports")
	fs.BoolVar(&c.disableMDM, "disable-mdm", false, "serve no MDM endpoints (API only)")
	fs.BoolVar(&c.dump, "dump", false, "write MDM requests and responses to stdout")
	fs.BoolVar(&c.debug, "debug", false, "log debug lines")
	fs.BoolVar(&c.version, "version", false, "print version and exit")
	fs.BoolVar(&c.retro, "retro", false, "allow retroactive certificate association for enrollments with none (e.g. migrated)")
	fs.BoolVar(&c.migration, "migration", false, "serve /migration: raw check-ins to the core service, Basic auth with the -api key (needs -api)")
	fs.BoolVar(&c.ui, "ui", false, "serve the operator console at /ui/ (needs -api; operators sign in with the API key)")
	fs.BoolVar(&c.uaZLDC, "ua-zl-dc", false, "answer UserAuthenticate with a zero-length DigestChallenge instead of 410")
	fs.Int64Var(&c.bodyLimit, "max-body-bytes", httpmdm.DefaultBodyLimit, "largest request body accepted; larger ones are answered 413")
	fs.Int64Var(&c.bodyBudget, "body-budget", mdmhttp.DefaultBodyBudget, "most bytes of request bodies read or held at once, MDM and API together; a body that finds no room within a second is answered 503 with Retry-After; 0 turns it off")
	fs.IntVar(&c.apiMaxIDs, "api-max-ids", api.DefaultMaxIDs, "most enrollment IDs accepted in one API call")
	fs.IntVar(&c.apiFailLimit, "api-auth-fail-limit", 0, "lock a client address out of the API (429) after this many failed authentications within -api-auth-fail-window; 0 turns it off")
	fs.DurationVar(&c.apiFailWindow, "api-auth-fail-window", mdmhttp.DefaultAuthFailWindow, "period over which -api-auth-fail-limit counts failures, and the longest lock-out")
	fs.DurationVar(&c.readHeaderTO, "read-header-timeout", 10*time.Second, "time allowed to read request headers")
	fs.DurationVar(&c.readTimeout, "read-timeout", 60*time.Second, "time allowed to read a whole request (408 when a body is too slow)")
	fs.DurationVar(&c.writeTimeout, "write-timeout", 120*time.Second, "time allowed to write a response")
	fs.DurationVar(&c.idleTimeout, "idle-timeout", 120*time.Second, "keep-alive idle timeout")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 30*time.Second, "time allowed for in-flight requests on shutdown")
	fs.IntVar(&c.maxHeaderBytes, "max-header-bytes", 8<<20, "largest request line plus headers (the enqueue API takes IDs in the path)")
	fs.StringVar(&c.pprofAddr, "pprof", "", "serve Go runtime profiles (/debug/pprof/) on this address, e.g. 127.0.0.1:6060; keep it private")
	fs.StringVar(&c.metricsListen, "metrics-listen", "", "serve /metrics without authentication on this address of its own, e.g. 127.0.0.1:9100; empty serves it on -listen behind the API key")
	c.push.register(fs)
	c.integrations.register(fs)
	c.enroll.register(fs)
	if err := fs.Parse(args[1:]); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q: every setting is a flag (-h lists them)", fs.Arg(0))
	}
	if err := cli.ApplyEnv(fs, getenv); err != nil {
		return nil, err
	}
	return c, nil
}

// run starts the server and blocks until ctx is done and in-flight
// requests have finished.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	c, err := parseFlags(args, getenv, stderr)
	if err != nil {
		return err
	}
	if c.version {
		fmt.Fprintf(stdout, "nanomdm %s\n", version)
		return nil
	}
	a, err := newApp(ctx, c, stdout, stderr)
	if err != nil {
		return err
	}
	defer a.close()
	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		return fmt.Errorf("listening: %w", err)
	}
	return a.serve(ctx, ln)
}

// check refuses flag combinations that cannot work.
func (c *config) check() error {
	if c.disableMDM && c.apiKey == "" {
		return errors.New("nothing for server to do: -disable-mdm and no -api key")
	}
	if c.migration && c.apiKey == "" {
		return errors.New("-migration needs -api: /migration is authenticated with the API key")
	}
	if c.ui && c.apiKey == "" {
		return errors.New("-ui needs -api: operators sign in to the console with the API key")
	}
	if c.caPath == "" && !c.disableMDM && !c.enroll.embedded() {
		return errors.New("-ca is required (unless -scep-ca-cert): a PEM file of the CA that issues device identities")
	}
	if err := c.enroll.check(c.disableMDM); err != nil {
		return err
	}
	if c.bodyBudget > 0 && c.bodyBudget < c.bodyLimit {
		return fmt.Errorf("-body-budget %d is below -max-body-bytes %d: the largest body could never be read", c.bodyBudget, c.bodyLimit)
	}
	return c.integrations.check(c.disableMDM)
}

// app is a built server: its storage, its handler, and what to close
// once it has stopped serving.
type app struct {
	c       *config
	logger  log.Logger
	store   storage.AllStorage
	handler http.Handler
	closers []func() // run last first
}

// close releases what newApp opened, in reverse order.
func (a *app) close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
}

// newApp opens the storage and builds the service chain and the routes
// of c. Close it with close once it has stopped serving.
func newApp(ctx context.Context, c *config, stdout, stderr io.Writer) (_ *app, err error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	pushFactory, err := c.push.factory()
	if err != nil {
		return nil, fmt.Errorf("push flags: %w", err)
	}
	logger := gokit.New(stderr, c.debug)
	var verifier httpmdm.CertVerifier
	if !c.disableMDM {
		scepRoot, err := c.enroll.scepRoot()
		if err != nil {
			return nil, err
		}
		verifier, err = loadVerifier(c.caPath, c.intPath, scepRoot)
		if err != nil {
			return nil, err
		}
	}
	store, closeStore, err := openStorages(ctx, c, logger)
	if err != nil {
		return nil, err
	}
	a := &app{c: c, logger: logger, closers: []func(){closeStore}}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	mtr := metrics.New(version)
	a.store = mtr.Storage(store)
	ch, err := a.services(mtr, stdout)
	if err != nil {
		return nil, err
	}
	mux, err := a.routes(ch, verifier, pushFactory, mtr)
	if err != nil {
		return nil, err
	}
	a.handler = mdmhttp.TraceLoggingMiddleware(mtr.HTTPMiddleware(mdmhttp.NotFoundJSONMiddleware(mux)), logger.With("handler", "log"))
	if c.pprofAddr != "" {
		stop, err := startPprof(c.pprofAddr, logger.With("handler", "pprof"))
		if err != nil {
			return nil, fmt.Errorf("serving profiles: %w", err)
		}
		a.closers = append(a.closers, stop)
	}
	if c.metricsListen != "" {
		stop, err := startMetrics(c.metricsListen, mtr.Handler(), logger.With("handler", "metrics"))
		if err != nil {
			return nil, fmt.Errorf("serving metrics: %w", err)
		}
		a.closers = append(a.closers, stop)
	}
	return a, nil
}

// chain is the service chain devices reach, and the core service alone
// (for /migration).
type chain struct {
	svc  service.CheckinAndCommandService
	core *nanomdm.Service
	// dumpRefused hands requests the identity check refuses to -dump.
	dumpRefused []httpmdm.Option
	// certAuth admits a certificate before the body is read.
	certAuth *certauth.CertAuth
}

// services builds the chain: dump -> certauth -> multi(core, webhook).
func (a *app) services(mtr *metrics.Metrics, stdout io.Writer) (*chain, error) {
	c, logger, store := a.c, a.logger, a.store
	var svc service.CheckinAndCommandService
	coreOpts := []nanomdm.Option{nanomdm.WithLogger(logger.With("service", "nanomdm"))}
	if c.uaZLDC {
		coreOpts = append(coreOpts, nanomdm.WithUserAuthenticateZeroLengthDigestChallenge())
	}
	dm, err := c.integrations.dmForwarder(logger.With("service", "dm"))
	if err != nil {
		return nil, err
	}
	if dm != nil {
		coreOpts = append(coreOpts, nanomdm.WithDeclarativeManagement(dm))
	}
	core := nanomdm.New(store, coreOpts...)
	svc = core
	if hook := c.integrations.newWebhook(store, logger.With("service", "webhook"), webhook.WithObserver(mtr)); hook != nil {
		mtr.WatchOutbox(store.OutboxStats)
		// Closed after the server has finished its requests and before
		// the storage closes: queued events are delivered.
		a.closers = append(a.closers, func() {
			fctx, cancel := context.WithTimeout(context.Background(), c.shutdownTimeout)
			defer cancel()
			if err := hook.Close(fctx); err != nil {
				logger.Info("msg", "flushing webhook", "err", err)
			}
		})
		svc = multi.New(logger.With("service", "multi"), core, hook)
	}
	certAuthOpts := []certauth.Option{certauth.WithLogger(logger.With("service", "certauth"))}
	if c.retro {
		certAuthOpts = append(certAuthOpts, certauth.WithAllowRetroactive())
	}
	certAuth := certauth.New(svc, store, certAuthOpts...)
	svc = certAuth
	var dumpRefused []httpmdm.Option
	if c.dump {
		d := dump.New(svc, stdout)
		svc = d
		dumpRefused = append(dumpRefused, httpmdm.WithDumpRefused(d.Dump))
	}
	return &chain{svc: mtr.Service(svc), core: core, dumpRefused: dumpRefused, certAuth: certAuth}, nil
}

// routes mounts the MDM endpoints, the API and the health checks.
func (a *app) routes(ch *chain, verifier httpmdm.CertVerifier, pushFactory *nanopush.Factory, mtr *metrics.Metrics) (*http.ServeMux, error) {
	c, logger, store := a.c, a.logger, a.store
	svc, core, dumpRefused := ch.svc, ch.core, ch.dumpRefused
	certAuth := ch.certAuth
	// One budget for every body the server reads, device or API; a
	// budget-less server passes bodies on unreserved.
	withBudget := func(h http.Handler) http.Handler { return h }
	var budgetOpts []httpmdm.Option
	if c.bodyBudget > 0 {
		budget := mdmhttp.NewBodyBudget(c.bodyBudget, mdmhttp.DefaultBudgetWait)
		mtr.WatchBodyBudget(budget)
		withBudget = func(h http.Handler) http.Handler { return budget.Middleware(h, c.bodyLimit) }
		budgetOpts = append(budgetOpts, httpmdm.WithBodyBudget(budget))
	}

	mux := http.NewServeMux()
	mux.Handle("/version", mdmhttp.VersionHandler(version))
	mux.Handle("/healthz", mdmhttp.HealthHandler())
	mux.Handle("/readyz", mdmhttp.ReadyHandler(store, mdmhttp.DefaultReadyTimeout, logger.With("handler", "readyz")))
	if !c.disableMDM {
		mdmOpts := append([]httpmdm.Option{
			httpmdm.WithLogger(logger.With("handler", "mdm")),
			httpmdm.WithBodyLimit(c.bodyLimit),
		}, dumpRefused...)
		mdmOpts = append(mdmOpts, budgetOpts...)
		if c.certHeader != "" {
			mdmOpts = append(mdmOpts, httpmdm.WithCertHeader(c.certHeader))
		}
		// The device routes also ask certauth, before reading a body,
		// whether the certificate may send it.
		deviceOpts := append([]httpmdm.Option{httpmdm.WithCertAdmitter(certAuth)}, mdmOpts...)
		if c.checkin {
			mux.Handle("/mdm", httpmdm.IdentityMiddleware(httpmdm.CommandAndReportResultsHandler(svc, mdmOpts...), verifier, deviceOpts...))
			mux.Handle("/checkin", httpmdm.IdentityMiddleware(httpmdm.CheckinHandler(svc, mdmOpts...), verifier, deviceOpts...))
		} else {
			mux.Handle("/mdm", httpmdm.IdentityMiddleware(httpmdm.CheckinAndCommandHandler(svc, mdmOpts...), verifier, deviceOpts...))
		}
		proxy, err := c.integrations.authProxy(store, logger.With("handler", "authproxy"))
		if err != nil {
			return nil, err
		}
		if proxy != nil {
			mux.Handle("/authproxy/", httpmdm.IdentityMiddleware(proxy, verifier, mdmOpts...))
		}
	}
	var auth func(h http.Handler, methods ...string) http.Handler
	if c.apiKey != "" {
		apiOpts := []api.Option{
			api.WithLogger(logger.With("handler", "api")),
			api.WithBodyLimit(c.bodyLimit),
			api.WithMaxIDs(c.apiMaxIDs),
		}
		pusher := pushsvc.New(store, pushFactory.NewProvider, pushsvc.WithLogger(logger.With("service", "push")))
		a.closers = append(a.closers, pusher.Close)
		apiOpts = append(apiOpts, api.WithPusher(mtr.Pusher(pusher)))
		// One limiter for every API route: failures anywhere count together.
		limiter := mdmhttp.NewAuthFailureLimiter(c.apiFailLimit, c.apiFailWindow)
		auth = func(h http.Handler, methods ...string) http.Handler {
			return mdmhttp.BasicAuthMiddleware(mdmhttp.MethodsMiddleware(withBudget(h), methods...), mdmhttp.APIUsername, c.apiKey, "nanomdm",
				mdmhttp.WithAuthFailureLimiter(limiter), mdmhttp.WithAuthLogger(logger.With("handler", "api")))
		}
		actions := ui.Actions{
			Enqueue:  api.EnqueueHandler(store, apiOpts...),
			Push:     api.PushHandler(apiOpts...),
			Queue:    api.QueueHandler(store, apiOpts...),
			Remove:   api.RemoveQueuedCommandHandler(store, apiOpts...),
			PushCert: api.PushCertHandler(store, apiOpts...),
		}
		mux.Handle("/v1/pushcert", auth(actions.PushCert, http.MethodPut, http.MethodGet))
		// GET too: the original accepts any method here and a command
		// translator in use enqueues with GET and a body.
		mux.Handle("/v1/enqueue/", auth(http.StripPrefix("/v1/enqueue/", actions.Enqueue), http.MethodPut, http.MethodPost, http.MethodGet))
		// IDs in a multipart form instead of the path (many IDs).
		mux.Handle("/v1/enqueue", auth(http.StripPrefix("/v1/enqueue", actions.Enqueue), http.MethodPut, http.MethodPost))
		mux.Handle("/v1/push/", auth(http.StripPrefix("/v1/push/", actions.Push), http.MethodGet, http.MethodPost))
		mux.Handle("/v1/escrowkeyunlock", auth(api.EscrowKeyUnlockHandler(store, api.EscrowKeyUnlockTarget{URL: c.integrations.escrowURL}, apiOpts...), http.MethodPost))
		mux.Handle("/v1/enrollments", auth(api.EnrollmentsHandler(store, apiOpts...), http.MethodGet))
		mux.Handle("/v1/enrollments/{id}/queue", auth(actions.Queue, http.MethodGet, http.MethodDelete))
		mux.Handle("/v1/enrollments/{id}/queue/{uuid}", auth(actions.Remove, http.MethodDelete))
		if c.ui {
			mux.Handle("/ui/", ui.New(store, c.apiKey, actions,
				ui.WithLogger(logger.With("handler", "ui")),
				ui.WithAuthFailureLimiter(limiter),
				ui.WithServerInfo(version, c.storageName()),
				ui.WithReportHistory(mtr),
				ui.WithBodyLimit(c.bodyLimit)))
		}
		mux.Handle("/v1/commands/{uuid}/results", auth(api.CommandResultsHandler(store, apiOpts...), http.MethodGet))
		if c.metricsListen == "" {
			mux.Handle("/metrics", auth(mtr.Handler(), http.MethodGet))
		}
		if c.migration {
			// Check-ins from another server's storage (nano2nano): the core
			// service only, without identity checks, certauth, webhook or dump.
			migOpts := []httpmdm.Option{
				httpmdm.WithLogger(logger.With("handler", "migration")),
				httpmdm.WithBodyLimit(c.bodyLimit),
			}
			mux.Handle("/migration", auth(httpmdm.CheckinHandler(core, migOpts...), http.MethodPut, http.MethodPost))
		}
	}

	if !c.disableMDM {
		if err := c.enroll.mount(mux, store, c, mtr, auth, logger); err != nil {
			return nil, err
		}
	}

	return mux, nil
}

// serve runs the app on ln until ctx is done, then shuts down gracefully.
func (a *app) serve(ctx context.Context, ln net.Listener) error {
	c := a.c
	srv := &http.Server{
		Handler:           a.handler,
		ReadHeaderTimeout: c.readHeaderTO,
		ReadTimeout:       c.readTimeout,
		WriteTimeout:      c.writeTimeout,
		IdleTimeout:       c.idleTimeout,
		MaxHeaderBytes:    c.maxHeaderBytes,
	}
	return serve(ctx, srv, ln, c.shutdownTimeout, a.logger)
}

// serve runs srv on ln until ctx is done, then shuts down gracefully:
// it stops accepting and waits up to timeout for in-flight requests.
func serve(ctx context.Context, srv *http.Server, ln net.Listener, timeout time.Duration, logger log.Logger) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	logger.Info("msg", "listening", "addr", ln.Addr().String(), "version", version)
	select {
	case err := <-errc:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	logger.Info("msg", "shutting down", "timeout", timeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	<-errc
	logger.Info("msg", "stopped")
	return nil
}

// loadVerifier trusts the CAs of caPath (may be empty when extraRoots,
// the embedded SCEP server's CA, is not) and extraRoots.
func loadVerifier(caPath, intPath string, extraRoots []byte) (*certverify.PoolVerifier, error) {
	var roots []byte
	if caPath != "" {
		var err error
		if roots, err = os.ReadFile(caPath); err != nil {
			return nil, fmt.Errorf("reading CA file: %w", err)
		}
	}
	roots = append(append(roots, '\n'), extraRoots...)
	var err error
	var ints []byte
	if intPath != "" {
		if ints, err = os.ReadFile(intPath); err != nil {
			return nil, fmt.Errorf("reading intermediate file: %w", err)
		}
	}
	v, err := certverify.NewPoolVerifier(roots, ints)
	if err != nil {
		return nil, fmt.Errorf("loading CA %s: %w", caPath, err)
	}
	return v, nil
}
