package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nanomdm/nanomdm/log"
)

// Pool defaults. Idle connections are kept up to the open limit so that a
// burst of device requests reuses sessions instead of opening new ones.
const (
	DefaultMaxOpenConns    = 16
	DefaultConnMaxIdleTime = 5 * time.Minute
)

// Config is what a backend is opened with: the parsed -storage-options
// string plus the settings of the WithX options.
type Config struct {
	// Delete removes a command's queue entry and result once a final
	// (non-NotNow) report arrives, and the command once no enrollment
	// refers to it.
	Delete bool
	// Migrate creates the schema in an empty database, or upgrades an
	// older one, when the store is opened.
	Migrate bool
	// Prepare, when set, overrides the dialect's choice of whether the
	// command-loop statements are prepared on the server once per
	// connection (Dialect.PrepareHot). Off suits connection poolers that
	// cannot keep prepared statements.
	Prepare *bool

	MaxOpenConns    int // 0 means unlimited
	MaxIdleConns    int // kept idle; defaults to MaxOpenConns
	ConnMaxLifetime time.Duration
	ConnMaxIdleTime time.Duration

	// Logger receives retries of transient errors and failures of
	// follow-up clean-ups that do not fail the request.
	Logger log.Logger
	// Dial, if set, opens the network connections to the server.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Option configures a backend.
type Option func(*Config)

// WithLogger sets the logger of the store.
func WithLogger(l log.Logger) Option {
	return func(c *Config) {
		if l != nil {
			c.Logger = l
		}
	}
}

// WithDial sets the function that opens network connections to the
// server (for tunnels, or tests that observe the traffic).
func WithDial(dial func(ctx context.Context, network, addr string) (net.Conn, error)) Option {
	return func(c *Config) { c.Dial = dial }
}

// OptionNames are the keys accepted in the -storage-options string.
var OptionNames = []string{
	"delete", "migrate", "prepare",
	"max_open_conns", "max_idle_conns", "conn_max_lifetime", "conn_max_idle_time",
}

// ErrOption wraps every problem with the options string.
var ErrOption = errors.New("invalid storage option")

// ParseConfig parses a comma-separated key=value options string, such as
// "delete=1,max_open_conns=20,conn_max_lifetime=30m", applies opts and
// fills in defaults. Unknown keys, repeated keys and bad values are errors.
func ParseConfig(options string, opts ...Option) (*Config, error) {
	c := &Config{
		MaxOpenConns:    DefaultMaxOpenConns,
		ConnMaxIdleTime: DefaultConnMaxIdleTime,
		Logger:          log.Nop,
	}
	idleSet := false
	seen := map[string]bool{}
	for _, kv := range strings.Split(options, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		key, value, ok := strings.Cut(kv, "=")
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if !ok {
			return nil, fmt.Errorf("%w: %q has no value (want key=value)", ErrOption, kv)
		}
		if seen[key] {
			return nil, fmt.Errorf("%w: %q given twice", ErrOption, key)
		}
		seen[key] = true
		var err error
		switch key {
		case "delete":
			c.Delete, err = parseFlag(value)
		case "migrate":
			c.Migrate, err = parseFlag(value)
		case "prepare":
			var on bool
			on, err = parseFlag(value)
			c.Prepare = &on
		case "max_open_conns":
			c.MaxOpenConns, err = parseCount(value)
		case "max_idle_conns":
			c.MaxIdleConns, err = parseCount(value)
			idleSet = true
		case "conn_max_lifetime":
			c.ConnMaxLifetime, err = parseDuration(value)
		case "conn_max_idle_time":
			c.ConnMaxIdleTime, err = parseDuration(value)
		default:
			known := append([]string(nil), OptionNames...)
			sort.Strings(known)
			return nil, fmt.Errorf("%w: unknown option %q (known: %s)", ErrOption, key, strings.Join(known, ", "))
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s=%q: %w", ErrOption, key, value, err)
		}
	}
	if !idleSet {
		c.MaxIdleConns = c.MaxOpenConns
		if c.MaxIdleConns == 0 {
			c.MaxIdleConns = DefaultMaxOpenConns
		}
	}
	if c.MaxOpenConns > 0 && c.MaxIdleConns > c.MaxOpenConns {
		return nil, fmt.Errorf("%w: max_idle_conns (%d) above max_open_conns (%d)", ErrOption, c.MaxIdleConns, c.MaxOpenConns)
	}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

func parseFlag(s string) (bool, error) {
	switch s {
	case "1", "true":
		return true, nil
	case "0", "false":
		return false, nil
	}
	return false, errors.New("want 1 or 0")
}

func parseCount(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, errors.New("want a whole number, 0 or more")
	}
	return n, nil
}

func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, errors.New("want a duration such as 30s, 5m or 1h (0 for none)")
	}
	return d, nil
}

// ConfigurePool applies the pool settings of c to db.
func (c *Config) ConfigurePool(db *sql.DB) {
	db.SetMaxOpenConns(c.MaxOpenConns)
	db.SetMaxIdleConns(c.MaxIdleConns)
	db.SetConnMaxLifetime(c.ConnMaxLifetime)
	db.SetConnMaxIdleTime(c.ConnMaxIdleTime)
}
