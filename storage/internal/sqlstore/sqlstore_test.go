package sqlstore

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestBind(t *testing.T) {
	question := &Dialect{}
	dollar := &Dialect{NumberedPlaceholders: true}
	for _, tc := range []struct {
		name     string
		d        *Dialect
		sql      string
		args     Args
		wantSQL  string
		wantArgs []any
	}{
		{
			name: "scalars", d: question,
			sql:     "SELECT a FROM t WHERE id = :id AND x = :x_2",
			args:    Args{"id": "A", "x_2": 7, "unused": 1},
			wantSQL: "SELECT a FROM t WHERE id = ? AND x = ?", wantArgs: []any{"A", 7},
		},
		{
			name: "repeated name, question marks", d: question,
			sql:     "UPDATE t SET a = :v WHERE b = :id OR c = :id",
			args:    Args{"v": 1, "id": "A"},
			wantSQL: "UPDATE t SET a = ? WHERE b = ? OR c = ?", wantArgs: []any{1, "A", "A"},
		},
		{
			name: "repeated name, numbered", d: dollar,
			sql:     "UPDATE t SET a = :v WHERE b = :id OR c = :id",
			args:    Args{"v": 1, "id": "A"},
			wantSQL: "UPDATE t SET a = $1 WHERE b = $2 OR c = $2", wantArgs: []any{1, "A"},
		},
		{
			name: "list", d: dollar,
			sql:     "SELECT id FROM t WHERE x = :x AND id IN (:ids)",
			args:    Args{"x": 0, "ids": []string{"a", "b", "c"}},
			wantSQL: "SELECT id FROM t WHERE x = $1 AND id IN ($2, $3, $4)", wantArgs: []any{0, "a", "b", "c"},
		},
		{
			name: "rows", d: dollar,
			sql:     "INSERT INTO q (id, uuid) VALUES :rows",
			args:    Args{"rows": Rows{{"a", "u"}, {"b", "u"}}},
			wantSQL: "INSERT INTO q (id, uuid) VALUES ($1, $2), ($3, $4)", wantArgs: []any{"a", "u", "b", "u"},
		},
		{
			name: "casts, quotes and comments untouched", d: dollar,
			sql:     "SELECT CAST(:r AS BYTEA), x::text, ':no', \":no\" -- :no\nFROM t WHERE a = :r",
			args:    Args{"r": []byte{1}},
			wantSQL: "SELECT CAST($1 AS BYTEA), x::text, ':no', \":no\" -- :no\nFROM t WHERE a = $1", wantArgs: []any{[]byte{1}},
		},
		{
			name: "quote doubled inside a string", d: question,
			sql:     "SELECT 'it''s :no', :yes",
			args:    Args{"yes": 1},
			wantSQL: "SELECT 'it''s :no', ?", wantArgs: []any{1},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sql, args, err := tc.d.bind(parseStatement(tc.sql), tc.args)
			if err != nil {
				t.Fatalf("bind: %v", err)
			}
			if sql != tc.wantSQL {
				t.Errorf("SQL:\nhave %q\nwant %q", sql, tc.wantSQL)
			}
			if !reflect.DeepEqual(args, tc.wantArgs) {
				t.Errorf("args: have %#v, want %#v", args, tc.wantArgs)
			}
		})
	}
}

func TestBindErrors(t *testing.T) {
	d := &Dialect{}
	for _, tc := range []struct {
		sql  string
		args Args
		want string
	}{
		{"SELECT :missing", Args{}, "no value for parameter :missing"},
		{"SELECT 1 WHERE id IN (:ids)", Args{"ids": []string{}}, "empty list"},
		{"INSERT INTO t VALUES :rows", Args{"rows": Rows{}}, "no rows"},
	} {
		if _, _, err := d.bind(parseStatement(tc.sql), tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("bind %q: have error %v, want one containing %q", tc.sql, err, tc.want)
		}
	}
}

func TestSplitStatements(t *testing.T) {
	script := `-- header; with a semicolon
CREATE TABLE a (x TEXT DEFAULT ';', y TEXT); -- trailing; comment
CREATE INDEX b ON a (x);

INSERT INTO a (x) VALUES ('it''s; fine');
`
	want := []string{
		"CREATE TABLE a (x TEXT DEFAULT ';', y TEXT)",
		"CREATE INDEX b ON a (x)",
		"INSERT INTO a (x) VALUES ('it''s; fine')",
	}
	if have := SplitStatements(script); !reflect.DeepEqual(have, want) {
		t.Errorf("have %q\nwant %q", have, want)
	}
}

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig("")
	if err != nil {
		t.Fatal(err)
	}
	if c.Delete || c.Migrate || c.MaxOpenConns != DefaultMaxOpenConns || c.MaxIdleConns != DefaultMaxOpenConns ||
		c.ConnMaxIdleTime != DefaultConnMaxIdleTime || c.ConnMaxLifetime != 0 {
		t.Errorf("defaults: have %+v", c)
	}
	c, err = ParseConfig(" delete=1, migrate=true,max_open_conns=20 ,conn_max_lifetime=30m,conn_max_idle_time=0")
	if err != nil {
		t.Fatal(err)
	}
	if !c.Delete || !c.Migrate || c.MaxOpenConns != 20 || c.MaxIdleConns != 20 || c.ConnMaxLifetime != 30*time.Minute || c.ConnMaxIdleTime != 0 {
		t.Errorf("parsed: have %+v", c)
	}
	if c.Prepare != nil {
		t.Errorf("prepare unset: have %v, want nil (the dialect decides)", *c.Prepare)
	}
	for _, v := range []bool{false, true} {
		c, err = ParseConfig("prepare=" + flagText(v))
		if err != nil || c.Prepare == nil || *c.Prepare != v {
			t.Errorf("prepare=%s: have %+v, %v", flagText(v), c, err)
		}
	}
	c, err = ParseConfig("max_open_conns=0")
	if err != nil || c.MaxIdleConns != DefaultMaxOpenConns {
		t.Errorf("unlimited pool: have %+v, %v; want %d idle", c, err, DefaultMaxOpenConns)
	}
	c, err = ParseConfig("max_open_conns=8,max_idle_conns=2,delete=0")
	if err != nil || c.MaxIdleConns != 2 || c.Delete {
		t.Errorf("explicit idle: have %+v, %v", c, err)
	}
	for _, tc := range []struct{ options, want string }{
		{"deleet=1", `unknown option "deleet"`},
		{"delete=yes", `delete="yes": want 1 or 0`},
		{"prepare=on", `prepare="on": want 1 or 0`},
		{"delete", "has no value"},
		{"max_open_conns=-1", "whole number"},
		{"max_idle_conns=x", "whole number"},
		{"conn_max_lifetime=10", "duration"},
		{"conn_max_idle_time=-1s", "duration"},
		{"delete=1,delete=0", "given twice"},
		{"max_open_conns=2,max_idle_conns=5", "above max_open_conns"},
	} {
		_, err := ParseConfig(tc.options)
		if !errors.Is(err, ErrOption) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseConfig(%q): have error %v, want %v containing %q", tc.options, err, ErrOption, tc.want)
		}
	}
}

func TestRetry(t *testing.T) {
	errTransient, errFatal := errors.New("deadlock"), errors.New("syntax")
	s := New(nil, &Dialect{IsRetryable: func(err error) bool { return errors.Is(err, errTransient) }}, nil)
	calls := 0
	err := s.retry(context.Background(), "test", func() error {
		calls++
		if calls < 3 {
			return errTransient
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Errorf("transient twice: have %v after %d calls, want success after 3", err, calls)
	}
	calls = 0
	err = s.retry(context.Background(), "test", func() error { calls++; return errFatal })
	if !errors.Is(err, errFatal) || calls != 1 {
		t.Errorf("fatal: have %v after %d calls, want it after 1", err, calls)
	}
	calls = 0
	err = s.retry(context.Background(), "test", func() error { calls++; return errTransient })
	if !errors.Is(err, errTransient) || calls != maxAttempts {
		t.Errorf("always transient: have %v after %d calls, want it after %d", err, calls, maxAttempts)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls = 0
	err = s.retry(ctx, "test", func() error { calls++; return errTransient })
	if !errors.Is(err, context.Canceled) || calls != 1 {
		t.Errorf("cancelled: have %v after %d calls, want the context error after 1", err, calls)
	}
}
