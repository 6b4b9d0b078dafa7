package sqltest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/nanomdm/nanomdm/certverify"
	mdmhttp "github.com/nanomdm/nanomdm/http"
	"github.com/nanomdm/nanomdm/http/api"
	httpmdm "github.com/nanomdm/nanomdm/http/mdm"
	"github.com/nanomdm/nanomdm/log"
	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/mdm/simulator"
	"github.com/nanomdm/nanomdm/service/nanomdm"
	"github.com/nanomdm/nanomdm/storage"
)

// APIKey is the API key of test instances.
const APIKey = "sqltest-api-key"

// Fleet is a CA whose identities the instances trust.
type Fleet struct {
	CA       *simulator.CA
	Verifier *certverify.PoolVerifier
}

// NewFleet creates the CA and the verifier trusting it.
func NewFleet(t testing.TB) *Fleet {
	t.Helper()
	ca, err := simulator.NewCA("sqltest device CA")
	if err != nil {
		t.Fatalf("creating CA: %v", err)
	}
	v, err := certverify.NewPoolVerifier(ca.CertPEM(), nil)
	if err != nil {
		t.Fatalf("creating verifier: %v", err)
	}
	return &Fleet{CA: ca, Verifier: v}
}

// Device returns a simulated device with its own identity that talks to
// url through client.
func (f *Fleet) Device(t testing.TB, url string, client *http.Client) *simulator.Device {
	t.Helper()
	udid := simulator.NewUDID()
	id, err := f.CA.Issue(udid)
	if err != nil {
		t.Fatalf("issuing identity: %v", err)
	}
	return simulator.NewDeviceWithUDID(&simulator.Transport{URL: url, Client: client}, id, udid)
}

// Handler builds one server instance over s the way cmd/nanomdm does: the
// core service behind the MDM handler and identity middleware on /mdm,
// the enqueue API behind Basic auth on /v1/enqueue/, all in the
// trace-logging middleware.
func (f *Fleet) Handler(s storage.AllStorage, logger log.Logger) http.Handler {
	svc := nanomdm.New(s, nanomdm.WithLogger(logger.With("service", "nanomdm")))
	mux := http.NewServeMux()
	mdmOpts := []httpmdm.Option{httpmdm.WithLogger(logger.With("handler", "mdm"))}
	mux.Handle("/mdm", httpmdm.IdentityMiddleware(httpmdm.CheckinAndCommandHandler(svc, mdmOpts...), f.Verifier, mdmOpts...))
	apiOpts := []api.Option{api.WithLogger(logger.With("handler", "api"))}
	auth := func(h http.Handler, methods ...string) http.Handler {
		return mdmhttp.BasicAuthMiddleware(mdmhttp.MethodsMiddleware(h, methods...), mdmhttp.APIUsername, APIKey, "nanomdm")
	}
	mux.Handle("/v1/enqueue/", auth(http.StripPrefix("/v1/enqueue/", api.EnqueueHandler(s, apiOpts...)), http.MethodPut, http.MethodPost))
	return mdmhttp.TraceLoggingMiddleware(mux, logger.With("handler", "log"))
}

// Enqueue sends cmd to ids through the enqueue API of the server at
// baseURL (without pushing) and fails unless every ID succeeded.
func Enqueue(ctx context.Context, client *http.Client, baseURL string, cmd *mdm.Command, ids []string) error {
	url := baseURL + "/v1/enqueue/" + strings.Join(ids, ",") + "?nopush=1"
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, bytes.NewReader(cmd.Raw))
	if err != nil {
		return err
	}
	req.SetBasicAuth(mdmhttp.APIUsername, APIKey)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("enqueue %s: status %d: %s", cmd.CommandUUID, resp.StatusCode, body)
	}
	return nil
}

// Recorder is a logger that keeps its lines, to look for failures.
type Recorder struct {
	mu     *sync.Mutex
	lines  *[]string
	fields []any
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder {
	return &Recorder{mu: &sync.Mutex{}, lines: new([]string)}
}

func (r *Recorder) add(level string, keyvals []any) {
	kv := append(append([]any{"level", level}, r.fields...), keyvals...)
	var b strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%v=%q", kv[i], fmt.Sprint(kv[i+1]))
	}
	r.mu.Lock()
	*r.lines = append(*r.lines, b.String())
	r.mu.Unlock()
}

// Info implements log.Logger.
func (r *Recorder) Info(keyvals ...any) { r.add("info", keyvals) }

// Debug implements log.Logger.
func (r *Recorder) Debug(keyvals ...any) { r.add("debug", keyvals) }

// With implements log.Logger.
func (r *Recorder) With(keyvals ...any) log.Logger {
	c := *r
	c.fields = append(append([]any(nil), r.fields...), keyvals...)
	return &c
}

// Grep returns the lines that contain every one of words.
func (r *Recorder) Grep(words ...string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, l := range *r.lines {
		ok := true
		for _, w := range words {
			ok = ok && strings.Contains(l, w)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

// server starts h on a loopback test server closed when t ends.
func server(t testing.TB, h http.Handler) *httptest.Server {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}
