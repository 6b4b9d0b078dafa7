// Command nanoctl is the operator's command line for a nanomdm server: it
// queues commands (from the templates of package mdm/commands or a raw
// plist), pushes, and shows enrollments, queues, command results and push
// certificates through the server's /v1 API.
//
//	nanoctl [-url URL] [-key KEY] [-json] COMMAND [flags] [args]
//
// The URL and API key come from the flags, else from NANOCTL_URL and
// NANOCTL_KEY, else from the config file (-config, NANOCTL_CONFIG, or
// nanoctl/config in the user's config directory), lines of "url = …" and
// "key = …".
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nanomdm/nanomdm/cmd/internal/cli"
	mdmhttp "github.com/nanomdm/nanomdm/http"
)

var version = "unknown"

func main() {
	cli.Main("nanoctl", func(ctx context.Context) error {
		return run(ctx, os.Args, os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	})
}

const usageText = `usage: nanoctl [global flags] COMMAND [flags] [args]

commands:
  templates [NAME]          list the command templates, or the parameters of one
  enqueue ID...             queue a command (-t TEMPLATE -p name=value..., or -plist FILE)
  push ID...                send APNs pushes
  enrollments               list enrollments (filters: -serial, -type, -enabled, -id)
  enrollment ID             show one enrollment
  queue ID                  show an enrollment's queued commands
  clear-queue ID            remove every queued command of an enrollment
  results UUID              show what enrollments answered to a command (-raw: the plists)
  pushcert [TOPIC]          list every stored push certificate with its expiry, or show one
  upload-pushcert CERT [KEY]  upload a push certificate and its private key (PEM)
  version                   print the version

"nanoctl COMMAND -h" shows the flags of a command.

global flags:
`

// config is what every command needs: where the server is and how to
// print.
type config struct {
	url     string
	key     string
	json    bool
	timeout time.Duration

	// configPath and getenv complete url and key on the first API call,
	// so that -h and templates need no server.
	configPath string
	getenv     func(string) string
	completed  bool
}

// command is one sub-command: it parses its own flags from args.
type command func(ctx context.Context, c *client, args []string, stdin io.Reader, stdout io.Writer) error

var commandTable = map[string]command{
	"templates":       runTemplates,
	"enqueue":         runEnqueue,
	"push":            runPush,
	"enrollments":     runEnrollments,
	"enrollment":      runEnrollment,
	"queue":           runQueue,
	"clear-queue":     runClearQueue,
	"results":         runResults,
	"pushcert":        runPushCert,
	"upload-pushcert": runUploadPushCert,
}

// run parses the global flags, finds the URL and key, and runs the
// command.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	c := &config{getenv: getenv}
	fs := flag.NewFlagSet("nanoctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usageText)
		fs.PrintDefaults()
	}
	fs.StringVar(&c.url, "url", "", "server base URL, e.g. https://mdm.example.com (env NANOCTL_URL)")
	fs.StringVar(&c.key, "key", "", "API key, the server's -api (env NANOCTL_KEY)")
	fs.StringVar(&c.configPath, "config", "", "config file of url = … and key = … lines (env NANOCTL_CONFIG; default "+defaultConfigPath()+")")
	fs.BoolVar(&c.json, "json", false, "print the server's answers as JSON instead of tables")
	fs.DurationVar(&c.timeout, "timeout", time.Minute, "time allowed for each API call")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errors.New("no command given")
	}
	name, rest := fs.Arg(0), fs.Args()[1:]
	switch name {
	case "version":
		fmt.Fprintf(stdout, "nanoctl %s\n", version)
		return nil
	case "help":
		fs.SetOutput(stdout)
		fmt.Fprint(stdout, usageText)
		fs.PrintDefaults()
		return nil
	}
	cmd, ok := commandTable[name]
	if !ok {
		fs.Usage()
		return fmt.Errorf("unknown command %q", name)
	}
	return cmd(ctx, newClient(c, stderr), rest, stdin, stdout)
}

// defaultConfigPath is nanoctl/config in the user's config directory.
func defaultConfigPath() string {
	dir, err := os.UserConfigDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "nanoctl", "config")
}

// complete fills the URL and key not given as flags from the environment,
// then from the config file, and checks that both are set.
func (c *config) complete() error {
	if c.completed {
		return nil
	}
	getenv, configPath := c.getenv, c.configPath
	if c.url == "" {
		c.url = getenv("NANOCTL_URL")
	}
	if c.key == "" {
		c.key = getenv("NANOCTL_KEY")
	}
	if configPath == "" {
		configPath = getenv("NANOCTL_CONFIG")
	}
	explicit := configPath != ""
	if !explicit {
		configPath = defaultConfigPath()
	}
	if (c.url == "" || c.key == "") && configPath != "" {
		file, err := readConfig(configPath)
		if err != nil && (explicit || !errors.Is(err, os.ErrNotExist)) {
			return err
		}
		if c.url == "" {
			c.url = file["url"]
		}
		if c.key == "" {
			c.key = file["key"]
		}
	}
	switch {
	case c.url == "":
		return errors.New("no server URL: give -url, NANOCTL_URL or url in the config file")
	case c.key == "":
		return errors.New("no API key: give -key, NANOCTL_KEY or key in the config file")
	}
	u, err := url.Parse(c.url)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("server URL %q: want http(s)://host[:port]", c.url)
	}
	c.url = strings.TrimRight(c.url, "/")
	c.completed = true
	return nil
}

// readConfig reads "name = value" lines; blank lines and lines starting
// with # are skipped.
func readConfig(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		name = strings.TrimSpace(name)
		if !ok || (name != "url" && name != "key") {
			return nil, fmt.Errorf("%s:%d: want url = … or key = …", path, n)
		}
		out[name] = strings.TrimSpace(value)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return out, nil
}

// client calls the server's API.
type client struct {
	cfg    *config
	http   *http.Client
	stderr io.Writer
}

func newClient(c *config, stderr io.Writer) *client {
	return &client{cfg: c, http: &http.Client{Timeout: c.timeout}, stderr: stderr}
}

// maxAnswerBytes bounds an API answer read by nanoctl.
const maxAnswerBytes = 64 << 20

// apiError is a non-2xx answer: the server's error text when it sent one.
type apiError struct {
	status int
	text   string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("server answered %d %s: %s", e.status, http.StatusText(e.status), e.text)
}

// call sends a request to path (with query) and decodes the JSON answer
// into out, when out is not nil. A 207 or error status still decodes the
// answer (the enqueue and push endpoints describe every ID) and returns
// an *apiError.
func (c *client) call(ctx context.Context, method, path string, query url.Values, body []byte, out any) error {
	return c.callWith(ctx, method, path, query, "", body, out)
}

// callWith is call with a Content-Type for the body ("" sends none).
func (c *client) callWith(ctx context.Context, method, path string, query url.Values, contentType string, body []byte, out any) error {
	if err := c.cfg.complete(); err != nil {
		return err
	}
	u := c.cfg.url + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.SetBasicAuth(mdmhttp.APIUsername, c.cfg.key)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return fmt.Errorf("reading the answer of %s %s: %w", method, path, err)
	}
	var errAnswer struct {
		Error string `json:"error"`
	}
	isJSON := json.Unmarshal(raw, &errAnswer) == nil
	if out != nil && isJSON {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("decoding the answer of %s %s: %w", method, path, err)
		}
	}
	if resp.StatusCode == http.StatusOK {
		if !isJSON && out != nil {
			return fmt.Errorf("%s %s: the answer is not JSON: %.200q", method, path, raw)
		}
		return nil
	}
	e := &apiError{status: resp.StatusCode, text: errAnswer.Error}
	switch {
	case e.text != "":
	case resp.StatusCode == http.StatusUnauthorized:
		e.text = "wrong API key"
	case resp.StatusCode == http.StatusMultiStatus:
		e.text = "some IDs failed (see above)"
	case !isJSON:
		e.text = strings.TrimSpace(string(raw))
	default:
		e.text = "see the answer above"
	}
	return e
}
