// Command nano2nano moves enrollments from a NanoMDM storage backend to a
// NanoMDM server. It reads every enrollment's Authenticate and TokenUpdate
// messages from the source storage (devices first, each followed by its
// user channels) and PUTs each raw message, one at a time and in order,
// to the destination server's /migration endpoint. With no -url or -key it
// only lists what it would send.
//
//	nano2nano -storage file -storage-dsn /var/lib/nanomdm \
//	    -url https://new.example.com/migration -key "$API_KEY"
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/nanomdm/nanomdm/cmd/internal/cli"
	mdmhttp "github.com/nanomdm/nanomdm/http"
	"github.com/nanomdm/nanomdm/log"
	"github.com/nanomdm/nanomdm/log/gokit"
	"github.com/nanomdm/nanomdm/mdm"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "unknown"

func main() {
	cli.Main("nano2nano", func(ctx context.Context) error {
		return run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr)
	})
}

// config is every flag of the tool.
type config struct {
	storage, dsn, options string
	oldDSN                string // deprecated -dsn
	url, key              string
	timeout               time.Duration
	debug, version        bool
}

func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = cli.Usage(fs, stderr)
	fs.StringVar(&c.storage, "storage", "file", "storage backend to read enrollments from")
	fs.StringVar(&c.dsn, "storage-dsn", "", "storage data source name (file: directory, default \"db\")")
	fs.StringVar(&c.oldDSN, "dsn", "", "deprecated alias of -storage-dsn")
	fs.StringVar(&c.options, "storage-options", "", "storage backend options")
	fs.StringVar(&c.url, "url", "", "the destination server's /migration URL; with no -url or -key the check-ins are only listed")
	fs.StringVar(&c.key, "key", "", "the destination server's API key (-api)")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "time allowed for each request to the destination")
	fs.BoolVar(&c.debug, "debug", false, "log debug lines")
	fs.BoolVar(&c.version, "version", false, "print version and exit")
	if err := fs.Parse(args[1:]); err != nil {
		return nil, err
	}
	if err := cli.ApplyEnv(fs, getenv); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	return c, nil
}

// run migrates (or lists) every enrollment of the source storage. It
// returns an error when reading fails or when any check-in was not
// accepted by the destination.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	c, err := parseFlags(args, getenv, stderr)
	if err != nil {
		return err
	}
	if c.version {
		fmt.Fprintf(stdout, "nano2nano %s\n", version)
		return nil
	}
	logger := gokit.New(stderr, c.debug)
	if c.oldDSN != "" {
		if c.dsn != "" {
			return errors.New("both -dsn and -storage-dsn given: -dsn is the deprecated name of -storage-dsn, give only -storage-dsn")
		}
		logger.Info("msg", "-dsn (NANOMDM_DSN) is deprecated: use -storage-dsn (NANOMDM_STORAGE_DSN), which takes the same value")
		c.dsn = c.oldDSN
	}

	var dest *destination
	switch {
	case c.url != "" && c.key != "":
		if dest, err = newDestination(c.url, c.key, c.timeout); err != nil {
			return err
		}
	case c.url != "" || c.key != "":
		logger.Info("msg", "sending needs both -url and -key: listing only")
	default:
		logger.Info("msg", "no -url or -key: listing only")
	}

	if err := checkSource(c); err != nil {
		return err
	}
	store, closeStore, err := cli.OpenStorage(ctx, c.storage, c.dsn, c.options, logger.With("storage", c.storage))
	if err != nil {
		return err
	}
	defer closeStore()

	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	checkins := make(chan any)
	readErr := make(chan error, 1)
	go func() {
		readErr <- store.RetrieveMigrationCheckins(readCtx, checkins)
		close(checkins)
	}()

	m := &migration{dest: dest, logger: logger}
	for msg := range checkins {
		if ctx.Err() != nil {
			break
		}
		m.handle(ctx, msg)
	}
	stopReading()
	for range checkins {
		// Drain until the reader has seen the cancellation and returned.
	}
	err = <-readErr
	if m.total == 0 && err == nil && ctx.Err() == nil {
		logger.Info("msg", "no enrollments to migrate: the source has no enabled enrollment with a TokenUpdate")
	}
	logger.Info("msg", "done", "checkins", m.total, "failed", m.failed, "sent", dest != nil)
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("interrupted after %d check-ins: %w", m.total, ctx.Err())
	case err != nil:
		return fmt.Errorf("reading check-ins from storage: %w", err)
	case m.failed > 0:
		return fmt.Errorf("%d of %d check-ins failed", m.failed, m.total)
	}
	return nil
}

// checkSource refuses a file-storage source directory that does not
// exist: opening it would create an empty one and migrate nothing.
func checkSource(c *config) error {
	if c.storage != "file" && c.storage != "" {
		return nil
	}
	dir := c.dsn
	if dir == "" {
		dir = cli.DefaultFileDSN
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("source storage: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("source storage %s is not a directory", dir)
	}
	return nil
}

// migration sends check-ins one at a time and counts the outcome.
type migration struct {
	dest   *destination // nil: list only
	logger log.Logger

	total, failed int
	// failedDevice is the device whose Authenticate was refused; its
	// TokenUpdate and user channels are then skipped, since they would
	// create an enrollment the destination knows nothing about.
	failedDevice string
}

func (m *migration) handle(ctx context.Context, msg any) {
	m.total++
	kv, device := describe(msg)
	logf := func(text string, extra ...any) {
		m.logger.Info(append(append([]any{"msg", text}, kv...), extra...)...)
	}
	if m.dest == nil {
		logf("checkin")
		return
	}
	if device != "" && device == m.failedDevice {
		m.failed++
		logf("checkin skipped", "err", "Authenticate of the device failed")
		return
	}
	status, body, err := m.dest.send(ctx, mdm.RawOf(msg))
	switch {
	case err != nil:
		m.failed++
		logf("checkin failed", "err", err)
	case status != http.StatusOK:
		m.failed++
		logf("checkin failed", "status", status, "body", body)
	default:
		logf("checkin", "status", status)
		return
	}
	if _, ok := msg.(*mdm.Authenticate); ok {
		m.failedDevice = device
	}
}

// describe returns the log fields of a check-in (checkin, device_id,
// user_id, type, id) and its device-channel ID.
func describe(msg any) ([]any, string) {
	var checkin string
	switch msg.(type) {
	case *mdm.Authenticate:
		checkin = mdm.MessageAuthenticate
	case *mdm.TokenUpdate:
		checkin = mdm.MessageTokenUpdate
	default:
		checkin = fmt.Sprintf("%T", msg)
	}
	e := mdm.EnrollmentOf(msg)
	if e == nil {
		return []any{"checkin", checkin}, ""
	}
	deviceID, userID := e.UDID, e.UserID
	if deviceID == "" {
		deviceID, userID = e.EnrollmentID, e.EnrollmentUserID
	}
	kv := []any{"checkin", checkin, "device_id", deviceID, "user_id", userID}
	id, err := e.Resolve()
	if err != nil {
		return append(kv, "type", "", "err", err), ""
	}
	kv = append(kv, "type", id.Type.String(), "id", id.ID)
	if id.ParentID != "" {
		return kv, id.ParentID
	}
	return kv, id.ID
}

// destination is the /migration endpoint of the server receiving the
// enrollments.
type destination struct {
	url    string
	key    string
	client *http.Client
}

func newDestination(rawURL, key string, timeout time.Duration) (*destination, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("parsing -url: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("-url %q: want an http or https URL of the /migration endpoint", rawURL)
	}
	return &destination{url: rawURL, key: key, client: &http.Client{Timeout: timeout}}, nil
}

// maxLoggedBody bounds the part of an error answer that is logged.
const maxLoggedBody = 512

// send PUTs one raw check-in and returns the answer's status and the
// start of its body.
func (d *destination) send(ctx context.Context, raw []byte) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, d.url, bytes.NewReader(raw))
	if err != nil {
		return 0, "", err
	}
	req.SetBasicAuth(mdmhttp.APIUsername, d.key)
	req.Header.Set("Content-Type", mdm.CheckinContentType)
	req.Header.Set("User-Agent", "nano2nano/"+version)
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxLoggedBody))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // let the connection be reused
	return resp.StatusCode, strings.TrimSpace(string(body)), nil
}
