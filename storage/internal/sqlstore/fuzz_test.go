package sqlstore

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// FuzzParseConfig feeds arbitrary -storage-options strings to the parser.
// Whatever the text, it never panics; a refusal always wraps ErrOption; an
// accepted string gives a usable pool configuration, and writing that
// configuration back out as an options string parses to the same values.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		"",
		"delete=1",
		"migrate=1,delete=0",
		"max_open_conns=20,max_idle_conns=5,conn_max_lifetime=30m,conn_max_idle_time=1h",
		"max_open_conns=0",
		" delete = true , migrate=false ,",
		"delete=1,delete=0",
		"bogus=1",
		"delete",
		"max_idle_conns=9,max_open_conns=3",
		"conn_max_lifetime=-1s",
		"max_open_conns=99999999999999999999",
		"=,=,=",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, options string) {
		c, err := ParseConfig(options)
		if err != nil {
			if !errors.Is(err, ErrOption) {
				t.Fatalf("ParseConfig(%q): error %v does not wrap ErrOption", options, err)
			}
			return
		}
		if c.MaxOpenConns < 0 || c.MaxIdleConns < 0 || c.ConnMaxLifetime < 0 || c.ConnMaxIdleTime < 0 {
			t.Fatalf("ParseConfig(%q) accepted negative pool settings: %+v", options, c)
		}
		if c.MaxOpenConns > 0 && c.MaxIdleConns > c.MaxOpenConns {
			t.Fatalf("ParseConfig(%q): idle %d above open %d", options, c.MaxIdleConns, c.MaxOpenConns)
		}
		if c.Logger == nil {
			t.Fatalf("ParseConfig(%q): nil logger", options)
		}
		again := fmt.Sprintf("delete=%s,migrate=%s,max_open_conns=%d,max_idle_conns=%d,conn_max_lifetime=%s,conn_max_idle_time=%s",
			flagText(c.Delete), flagText(c.Migrate), c.MaxOpenConns, c.MaxIdleConns, c.ConnMaxLifetime, c.ConnMaxIdleTime)
		if c.Prepare != nil {
			again += ",prepare=" + flagText(*c.Prepare)
		}
		c2, err := ParseConfig(again)
		if err != nil {
			t.Fatalf("re-parsing %q (from %q): %v", again, options, err)
		}
		if (c2.Prepare == nil) != (c.Prepare == nil) || (c.Prepare != nil && *c2.Prepare != *c.Prepare) {
			t.Fatalf("round trip of %q through %q changed prepare", options, again)
		}
		if c2.Delete != c.Delete || c2.Migrate != c.Migrate || c2.MaxOpenConns != c.MaxOpenConns ||
			c2.MaxIdleConns != c.MaxIdleConns || c2.ConnMaxLifetime != c.ConnMaxLifetime || c2.ConnMaxIdleTime != c.ConnMaxIdleTime {
			t.Fatalf("round trip of %q through %q changed the configuration", options, again)
		}
		if strings.Count(options, "=") == 0 && strings.TrimSpace(strings.ReplaceAll(options, ",", "")) != "" {
			t.Fatalf("ParseConfig(%q) accepted text without a key=value pair", options)
		}
	})
}

func flagText(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
