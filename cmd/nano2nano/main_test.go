package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/storage/file"
	"github.com/nanomdm/nanomdm/storage/storagetest"
)

// source is a file storage directory with enrolled devices.
type source struct {
	dir     string
	devices []*storagetest.Channel
	// raws is what RetrieveMigrationCheckins gives, in order.
	raws [][]byte
}

// newSource enrolls three devices, the first with two user channels and
// the second sending binary plists, and one device that is checked out.
func newSource(t *testing.T) *source {
	t.Helper()
	src := &source{dir: filepath.Join(t.TempDir(), "db")}
	s, err := file.New(src.dir)
	if err != nil {
		t.Fatalf("opening file storage: %v", err)
	}
	for i := 0; i < 3; i++ {
		d := storagetest.NewDevice(t)
		d.Binary = i == 1
		d.Enroll(t, s)
		if i == 0 {
			d.NewUser(t).Enroll(t, s)
			d.NewSharediPadUser(t).Enroll(t, s)
		}
		src.devices = append(src.devices, d)
	}
	gone := storagetest.NewDevice(t)
	gone.Enroll(t, s)
	if err := s.Disable(gone.Request()); err != nil {
		t.Fatalf("disabling: %v", err)
	}
	c := make(chan any, 100)
	if err := s.RetrieveMigrationCheckins(context.Background(), c); err != nil {
		t.Fatalf("reading migration check-ins: %v", err)
	}
	close(c)
	for msg := range c {
		src.raws = append(src.raws, mdm.RawOf(msg))
	}
	if len(src.raws) != 8 {
		t.Fatalf("test setup: %d check-ins to migrate, want 8", len(src.raws))
	}
	return src
}

// received is one request the destination saw.
type received struct {
	method, contentType, user, pass string
	body                            []byte
}

// destination records requests and answers each with answer(body).
type fakeDestination struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []received
}

func newFakeDestination(t *testing.T, answer func(body []byte) (int, string)) *fakeDestination {
	d := &fakeDestination{}
	d.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		user, pass, _ := r.BasicAuth()
		d.mu.Lock()
		d.reqs = append(d.reqs, received{r.Method, r.Header.Get("Content-Type"), user, pass, body})
		d.mu.Unlock()
		status, text := answer(body)
		w.WriteHeader(status)
		io.WriteString(w, text)
	}))
	t.Cleanup(d.Close)
	return d
}

func (d *fakeDestination) requests() []received {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]received(nil), d.reqs...)
}

func runTool(t *testing.T, env map[string]string, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), append([]string{"nano2nano"}, args...), func(k string) string { return env[k] }, &stdout, &stderr)
	return stdout.String() + stderr.String(), err
}

func TestSendsEveryCheckinInOrder(t *testing.T) {
	src := newSource(t)
	dest := newFakeDestination(t, func([]byte) (int, string) { return http.StatusOK, "" })
	logs, err := runTool(t, nil, "-storage", "file", "-storage-dsn", src.dir, "-url", dest.URL+"/migration", "-key", "secret")
	if err != nil {
		t.Fatalf("run: %v\n%s", err, logs)
	}
	reqs := dest.requests()
	if len(reqs) != len(src.raws) {
		t.Fatalf("destination received %d check-ins, want %d", len(reqs), len(src.raws))
	}
	for i, r := range reqs {
		if !bytes.Equal(r.body, src.raws[i]) {
			t.Errorf("check-in %d: body differs from the stored raw message (have %d bytes, want %d)", i, len(r.body), len(src.raws[i]))
		}
		if r.method != http.MethodPut || r.user != "nanomdm" || r.pass != "secret" || r.contentType != mdm.CheckinContentType {
			t.Errorf("check-in %d: have %s, user %q, password %q, content type %q; want PUT with nanomdm:secret and %q",
				i, r.method, r.user, r.pass, r.contentType, mdm.CheckinContentType)
		}
	}
	for _, want := range []string{
		"checkin=Authenticate device_id=" + src.devices[0].Enrollment.UDID,
		"checkin=TokenUpdate device_id=" + src.devices[0].Enrollment.UDID + " user_id=" + mdm.SharediPadUserID,
		"type=User",
		`type="Shared iPad"`,
		"status=200",
		"checkins=8 failed=0",
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
}

func TestReportsFailures(t *testing.T) {
	src := newSource(t)
	refusedDevice := src.devices[0].Enrollment.UDID
	refusedUser := src.devices[2].Enrollment.UDID
	dest := newFakeDestination(t, func(body []byte) (int, string) {
		switch {
		case bytes.Contains(body, []byte(refusedDevice)) && bytes.Contains(body, []byte(mdm.MessageAuthenticate)):
			return http.StatusInternalServerError, "storage down"
		case bytes.Contains(body, []byte(refusedUser)) && bytes.Contains(body, []byte(mdm.MessageTokenUpdate)):
			return http.StatusBadRequest, "bad token update"
		}
		return http.StatusOK, ""
	})
	logs, err := runTool(t, nil, "-storage-dsn", src.dir, "-url", dest.URL+"/migration", "-key", "secret")
	// Device 0: Authenticate refused, its TokenUpdate and two users
	// skipped; device 2: TokenUpdate refused.
	if err == nil || !strings.Contains(err.Error(), "5 of 8 check-ins failed") {
		t.Errorf("run: have error %v, want 5 of 8 check-ins failed", err)
	}
	for _, want := range []string{
		`status=500 body="storage down"`,
		`status=400 body="bad token update"`,
		"checkin skipped",
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	for _, r := range dest.requests() {
		if bytes.Contains(r.body, []byte(refusedDevice)) && !bytes.Contains(r.body, []byte(mdm.MessageAuthenticate)) {
			t.Errorf("a check-in of %s was sent after its Authenticate failed", refusedDevice)
		}
	}
	if have := len(dest.requests()); have != 5 {
		t.Errorf("destination received %d check-ins, want 5 (3 skipped)", have)
	}
}

func TestUnreachableDestination(t *testing.T) {
	src := newSource(t)
	dest := newFakeDestination(t, func([]byte) (int, string) { return http.StatusOK, "" })
	dest.Close()
	logs, err := runTool(t, nil, "-storage-dsn", src.dir, "-url", dest.URL, "-key", "k")
	if err == nil || !strings.Contains(err.Error(), "8 of 8 check-ins failed") {
		t.Errorf("run: have error %v, want every check-in failed\n%s", err, logs)
	}
}

func TestListOnly(t *testing.T) {
	src := newSource(t)
	dest := newFakeDestination(t, func([]byte) (int, string) { return http.StatusOK, "" })
	for _, tc := range []struct {
		name string
		args []string
		note string
	}{
		{"no url or key", nil, "no -url or -key: listing only"},
		{"url without key", []string{"-url", dest.URL}, "sending needs both -url and -key: listing only"},
		{"key without url", []string{"-key", "k"}, "sending needs both -url and -key: listing only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs, err := runTool(t, nil, append([]string{"-storage-dsn", src.dir}, tc.args...)...)
			if err != nil {
				t.Fatalf("run: %v\n%s", err, logs)
			}
			if !strings.Contains(logs, tc.note) {
				t.Errorf("log lacks %q:\n%s", tc.note, logs)
			}
			if n := strings.Count(logs, "msg=checkin "); n != 8 {
				t.Errorf("listed %d check-ins, want 8:\n%s", n, logs)
			}
			if strings.Contains(logs, "status=") {
				t.Errorf("listing logged a send:\n%s", logs)
			}
		})
	}
	if n := len(dest.requests()); n != 0 {
		t.Errorf("listing sent %d requests, want none", n)
	}
}

func TestEnvironment(t *testing.T) {
	src := newSource(t)
	dest := newFakeDestination(t, func([]byte) (int, string) { return http.StatusOK, "" })
	env := map[string]string{
		"NANOMDM_STORAGE_DSN": src.dir,
		"NANOMDM_URL":         dest.URL + "/migration",
		"NANOMDM_KEY":         "from-env",
	}
	if logs, err := runTool(t, env); err != nil {
		t.Fatalf("run: %v\n%s", err, logs)
	}
	reqs := dest.requests()
	if len(reqs) != 8 || reqs[0].pass != "from-env" {
		t.Errorf("have %d requests (first with password %q), want 8 with the key from NANOMDM_KEY", len(reqs), reqs[0].pass)
	}
}

func TestStartupErrors(t *testing.T) {
	src := newSource(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"missing source directory", []string{"-storage-dsn", filepath.Join(t.TempDir(), "nope")}, "source storage"},
		{"unknown backend", []string{"-storage", "bogus"}, "unknown storage backend"},
		{"bad url", []string{"-storage-dsn", src.dir, "-url", "ftp://x/migration", "-key", "k"}, "http or https URL"},
		{"stray argument", []string{"-storage-dsn", src.dir, "extra"}, "unexpected arguments"},
		{"-dsn and -storage-dsn", []string{"-storage-dsn", src.dir, "-dsn", src.dir}, "give only -storage-dsn"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runTool(t, nil, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("have error %v, want one containing %q", err, tc.want)
			}
		})
	}
	if out, err := runTool(t, nil, "-version"); err != nil || !strings.HasPrefix(out, "nano2nano ") {
		t.Errorf("-version: have %q, %v", out, err)
	}
}

// TestDeprecatedDSN checks that -dsn still names the source and says it
// is deprecated.
func TestDeprecatedDSN(t *testing.T) {
	src := newSource(t)
	logs, err := runTool(t, nil, "-dsn", src.dir)
	if err != nil {
		t.Fatalf("listing with -dsn: %v\n%s", err, logs)
	}
	if !strings.Contains(logs, "-dsn (NANOMDM_DSN) is deprecated") {
		t.Errorf("output %q does not say -dsn is deprecated", logs)
	}
}
