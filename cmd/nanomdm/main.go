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
	"github.com/nanomdm/nanomdm/log"
	"github.com/nanomdm/nanomdm/log/gokit"
	"github.com/nanomdm/nanomdm/metrics"
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

// storageHookKey is the context key under which a test hands run a
// func(storage.AllStorage), called with the storage once it is open, so
// the test can look at what the server stored.
type storageHookKey struct{}

// config is every flag of the server.
type config struct {
	listen          string
	apiKey          string
	caPath          string
	intPath         string
	certHeader      string
	storage         cli.StringList
	storageDSN      cli.StringList
	storageOptions  cli.StringList
	checkin         bool
	disableMDM      bool
	dump            bool
	debug           bool
	version         bool
	uaZLDC          bool
	retro           bool
	migration       bool
	bodyLimit       int64
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
	fs.Var(&c.storageDSN, "dsn", "deprecated alias of -storage-dsn")
	fs.Var(&c.storageOptions, "storage-options", "storage backend options; repeat with -storage")
	fs.BoolVar(&c.checkin, "checkin", false, "separate /checkin endpoint for check-ins; /mdm then takes only command reports")
	fs.BoolVar(&c.disableMDM, "disable-mdm", false, "serve no MDM endpoints (API only)")
	fs.BoolVar(&c.dump, "dump", false, "write MDM requests and responses to stdout")
	fs.BoolVar(&c.debug, "debug", false, "log debug lines")
	fs.BoolVar(&c.version, "version", false, "print version and exit")
	fs.BoolVar(&c.retro, "retro", false, "allow retroactive certificate association for enrollments with none (e.g. migrated)")
	fs.BoolVar(&c.migration, "migration", false, "serve /migration: raw check-ins to the core service, Basic auth with the -api key (needs -api)")
	fs.BoolVar(&c.uaZLDC, "ua-zl-dc", false, "answer UserAuthenticate with a zero-length DigestChallenge instead of 410")
	fs.Int64Var(&c.bodyLimit, "max-body-bytes", httpmdm.DefaultBodyLimit, "largest request body accepted; larger ones are answered 413")
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
	if c.disableMDM && c.apiKey == "" {
		return errors.New("nothing for server to do: -disable-mdm and no -api key")
	}
	if c.migration && c.apiKey == "" {
		return errors.New("-migration needs -api: /migration is authenticated with the API key")
	}
	if c.caPath == "" && !c.disableMDM && !c.enroll.embedded() {
		return errors.New("-ca is required (unless -scep-ca-cert): a PEM file of the CA that issues device identities")
	}
	if err := c.enroll.check(c.disableMDM); err != nil {
		return err
	}
	if err := c.integrations.check(c.disableMDM); err != nil {
		return err
	}
	pushFactory, err := c.push.factory()
	if err != nil {
		return fmt.Errorf("push flags: %w", err)
	}
	logger := gokit.New(stderr, c.debug)

	var verifier httpmdm.CertVerifier
	if !c.disableMDM {
		scepRoot, err := c.enroll.scepRoot()
		if err != nil {
			return err
		}
		verifier, err = loadVerifier(c.caPath, c.intPath, scepRoot)
		if err != nil {
			return err
		}
	}

	store, closeStore, err := openStorages(ctx, c, logger)
	if err != nil {
		return err
	}
	defer closeStore()
	if hook, ok := ctx.Value(storageHookKey{}).(func(storage.AllStorage)); ok {
		hook(store)
	}
	mtr := metrics.New(version)
	stores, err := instrument(store, mtr)
	if err != nil {
		return err
	}
	store = stores

	var svc service.CheckinAndCommandService
	coreOpts := []nanomdm.Option{nanomdm.WithLogger(logger.With("service", "nanomdm"))}
	if c.uaZLDC {
		coreOpts = append(coreOpts, nanomdm.WithUserAuthenticateZeroLengthDigestChallenge())
	}
	dm, err := c.integrations.dmForwarder(logger.With("service", "dm"))
	if err != nil {
		return err
	}
	if dm != nil {
		coreOpts = append(coreOpts, nanomdm.WithDeclarativeManagement(dm))
	}
	core := nanomdm.New(store, coreOpts...)
	svc = core
	if hook := c.integrations.newWebhook(store, logger.With("service", "webhook"), webhook.WithObserver(mtr)); hook != nil {
		// Deferred after the storage's close, so it runs first: once the
		// server has finished its requests, queued events are delivered.
		defer func() {
			fctx, cancel := context.WithTimeout(context.Background(), c.shutdownTimeout)
			defer cancel()
			if err := hook.Close(fctx); err != nil {
				logger.Info("msg", "flushing webhook", "err", err)
			}
		}()
		svc = multi.New(logger.With("service", "multi"), core, hook)
	}
	certAuthOpts := []certauth.Option{certauth.WithLogger(logger.With("service", "certauth"))}
	if c.retro {
		certAuthOpts = append(certAuthOpts, certauth.WithAllowRetroactive())
	}
	svc = certauth.New(svc, store, certAuthOpts...)
	if c.dump {
		svc = dump.New(svc, stdout)
	}
	svc = mtr.Service(svc)

	mux := http.NewServeMux()
	mux.Handle("/version", mdmhttp.VersionHandler(version))
	mux.Handle("/healthz", mdmhttp.HealthHandler())
	mux.Handle("/readyz", mdmhttp.ReadyHandler(stores, mdmhttp.DefaultReadyTimeout, logger.With("handler", "readyz")))
	if !c.disableMDM {
		mdmOpts := []httpmdm.Option{
			httpmdm.WithLogger(logger.With("handler", "mdm")),
			httpmdm.WithBodyLimit(c.bodyLimit),
		}
		if c.certHeader != "" {
			mdmOpts = append(mdmOpts, httpmdm.WithCertHeader(c.certHeader))
		}
		if c.checkin {
			mux.Handle("/mdm", httpmdm.IdentityMiddleware(httpmdm.CommandAndReportResultsHandler(svc, mdmOpts...), verifier, mdmOpts...))
			mux.Handle("/checkin", httpmdm.IdentityMiddleware(httpmdm.CheckinHandler(svc, mdmOpts...), verifier, mdmOpts...))
		} else {
			mux.Handle("/mdm", httpmdm.IdentityMiddleware(httpmdm.CheckinAndCommandHandler(svc, mdmOpts...), verifier, mdmOpts...))
		}
		proxy, err := c.integrations.authProxy(stores, logger.With("handler", "authproxy"))
		if err != nil {
			return err
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
		defer pusher.Close()
		apiOpts = append(apiOpts, api.WithPusher(mtr.Pusher(pusher)))
		// One limiter for every API route: failures anywhere count together.
		limiter := mdmhttp.NewAuthFailureLimiter(c.apiFailLimit, c.apiFailWindow)
		auth = func(h http.Handler, methods ...string) http.Handler {
			return mdmhttp.BasicAuthMiddleware(mdmhttp.MethodsMiddleware(h, methods...), mdmhttp.APIUsername, c.apiKey, "nanomdm",
				mdmhttp.WithAuthFailureLimiter(limiter))
		}
		mux.Handle("/v1/pushcert", auth(api.PushCertHandler(store, apiOpts...), http.MethodPut, http.MethodGet))
		mux.Handle("/v1/enqueue/", auth(http.StripPrefix("/v1/enqueue/", api.EnqueueHandler(store, apiOpts...)), http.MethodPut, http.MethodPost))
		mux.Handle("/v1/push/", auth(http.StripPrefix("/v1/push/", api.PushHandler(apiOpts...)), http.MethodGet, http.MethodPost))
		mux.Handle("/v1/escrowkeyunlock", auth(api.EscrowKeyUnlockHandler(store, api.EscrowKeyUnlockTarget{URL: c.integrations.escrowURL}, apiOpts...), http.MethodPost))
		mux.Handle("/v1/enrollments", auth(api.EnrollmentsHandler(stores, apiOpts...), http.MethodGet))
		mux.Handle("/v1/enrollments/{id}/queue", auth(api.QueueHandler(stores, apiOpts...), http.MethodGet, http.MethodDelete))
		mux.Handle("/v1/commands/{uuid}/results", auth(api.CommandResultsHandler(stores, apiOpts...), http.MethodGet))
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
		if err := c.enroll.mount(mux, stores, c, mtr, auth, logger); err != nil {
			return err
		}
	}

	srv := &http.Server{
		Handler:           mdmhttp.TraceLoggingMiddleware(mtr.HTTPMiddleware(mux, metrics.MuxRoute(mux)), logger.With("handler", "log")),
		ReadHeaderTimeout: c.readHeaderTO,
		ReadTimeout:       c.readTimeout,
		WriteTimeout:      c.writeTimeout,
		IdleTimeout:       c.idleTimeout,
		MaxHeaderBytes:    c.maxHeaderBytes,
	}
	if c.pprofAddr != "" {
		stop, err := startPprof(c.pprofAddr, logger.With("handler", "pprof"))
		if err != nil {
			return fmt.Errorf("serving profiles: %w", err)
		}
		defer stop()
	}
	if c.metricsListen != "" {
		stop, err := startMetrics(c.metricsListen, mtr.Handler(), logger.With("handler", "metrics"))
		if err != nil {
			return fmt.Errorf("serving metrics: %w", err)
		}
		defer stop()
	}
	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		return fmt.Errorf("listening: %w", err)
	}
	return serve(ctx, srv, ln, c.shutdownTimeout, logger)
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
