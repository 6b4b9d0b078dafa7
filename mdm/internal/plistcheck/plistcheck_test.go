package plistcheck

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/groob/plist"
	"github.com/nanomdm/nanomdm/internal/fixture"
)

// captures are real device request bodies.
var captures = []string{
	"Authenticate.1.plist",
	"Authenticate.2.plist",
	"DeviceInformation.1.plist",
	"TokenUpdate.1.plist",
	"TokenUpdate.2.plist",
	"idle-report.body.plist",
}

// decodeResult is what groob/plist made of an input.
type decodeResult struct {
	m      map[string]any
	mErr   error
	any    any
	anyErr error
}

// hangGuard is how long groobDecode waits before calling a decode hung.
// It is a guard against endless loops, not a speed goal: the cost of what
// Check accepts is held by allocBound (FuzzCheck, TestWorstAccepted), which
// does not depend on how busy the machine is.
const hangGuard = 2 * time.Minute

// groobDecode runs groob/plist.Unmarshal into a map and into an empty
// interface. A panic fails the test, and so does a decode that does not
// finish within hangGuard.
func groobDecode(tb testing.TB, data []byte) decodeResult {
	tb.Helper()
	type outcome struct {
		res      decodeResult
		panicked any
	}
	done := make(chan outcome, 1)
	go func() {
		var o outcome
		defer func() {
			o.panicked = recover()
			done <- o
		}()
		o.res.mErr = plist.Unmarshal(data, &o.res.m)
		o.res.anyErr = plist.Unmarshal(data, &o.res.any)
	}()
	select {
	case o := <-done:
		if o.panicked != nil {
			tb.Fatalf("groob/plist panicked on input Check accepted: %v\ninput: %q", o.panicked, truncate(data))
		}
		return o.res
	case <-time.After(hangGuard):
		tb.Fatalf("groob/plist took over %v on input Check accepted\ninput: %q", hangGuard, truncate(data))
		return decodeResult{}
	}
}

func truncate(data []byte) []byte {
	if len(data) > 256 {
		return data[:256]
	}
	return data
}

// sentinel names the sentinel err wraps, or "" for nil; it fails the test
// if err wraps none or more than one.
func sentinel(tb testing.TB, err error) error {
	tb.Helper()
	if err == nil {
		return nil
	}
	var found []error
	for _, s := range []error{ErrTooDeep, ErrTooManyElements, ErrMalformed} {
		if errors.Is(err, s) {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		tb.Fatalf("error %q wraps %d sentinels, want exactly 1", err, len(found))
	}
	return found[0]
}

func TestCaptures(t *testing.T) {
	t.Parallel()
	for _, name := range captures {
		t.Run(name, func(t *testing.T) {
			data := fixture.Read(t, name)
			if err := Check(data, DefaultLimits); err != nil {
				t.Fatalf("Check: have %v, want nil", err)
			}
			res := groobDecode(t, data)
			if res.mErr != nil {
				t.Fatalf("groob decode into map: %v", res.mErr)
			}
			if _, ok := res.m["MessageType"]; !ok {
				if _, ok := res.m["Status"]; !ok {
					t.Errorf("decoded map has neither MessageType nor Status: %v", res.m)
				}
			}
		})
	}
}

// TestCapturesBinary re-encodes each capture as a binary plist and checks
// that it passes Check and decodes back to the same value.
func TestCapturesBinary(t *testing.T) {
	t.Parallel()
	for _, name := range captures {
		t.Run(name, func(t *testing.T) {
			var want map[string]any
			if err := plist.Unmarshal(fixture.Read(t, name), &want); err != nil {
				t.Fatalf("decoding XML capture: %v", err)
			}
			bin := encodeBinary(want)
			if err := Check(bin, DefaultLimits); err != nil {
				t.Fatalf("Check: have %v, want nil", err)
			}
			res := groobDecode(t, bin)
			if res.mErr != nil {
				t.Fatalf("groob decode of binary: %v", res.mErr)
			}
			if !reflect.DeepEqual(res.m, want) {
				t.Errorf("binary round trip:\nhave %#v\nwant %#v", res.m, want)
			}
		})
	}
}

func TestBinaryRoundTrip(t *testing.T) {
	t.Parallel()
	want := map[string]any{
		"ascii":     "hello",
		"long":      strings.Repeat("x", 300), // extended count, 2 bytes
		"utf16":     "héllo wörld ✓",
		"empty":     "",
		"small":     uint64(7),
		"u16":       uint64(65535),
		"u32":       uint64(1 << 31),
		"u64":       uint64(1<<63 + 5),
		"real":      3.25,
		"true":      true,
		"false":     false,
		"data":      []byte{0, 1, 2, 0xff},
		"noData":    []byte{},
		"date":      time.Unix(1700000000, 0),
		"emptyArr":  []any{},
		"arr":       []any{"a", uint64(1), []any{"nested"}, map[string]any{"k": "v"}},
		"dict":      map[string]any{"inner": map[string]any{"deeper": false}},
		"emptyDict": map[string]any{},
	}
	bin := encodeBinary(want)
	if err := Check(bin, DefaultLimits); err != nil {
		t.Fatalf("Check: have %v, want nil", err)
	}
	res := groobDecode(t, bin)
	if res.mErr != nil {
		t.Fatalf("groob decode: %v", res.mErr)
	}
	if !reflect.DeepEqual(res.m, want) {
		t.Errorf("round trip:\nhave %#v\nwant %#v", res.m, want)
	}
	if !reflect.DeepEqual(res.any, any(want)) {
		t.Errorf("round trip into any:\nhave %#v\nwant %#v", res.any, want)
	}
}

func TestLimitsDefaults(t *testing.T) {
	t.Parallel()
	// Zero limits mean the defaults: 32 nested arrays pass, 33 do not.
	for _, tc := range []struct {
		depth int
		want  error
	}{
		{32, nil},
		{33, ErrTooDeep},
	} {
		if have := sentinel(t, Check(nestedArraysBinary(tc.depth), Limits{})); have != tc.want {
			t.Errorf("binary depth %d with zero Limits: have %v, want %v", tc.depth, have, tc.want)
		}
		if have := sentinel(t, Check(nestedArraysXML(tc.depth, true), Limits{})); have != tc.want {
			t.Errorf("XML depth %d with zero Limits: have %v, want %v", tc.depth, have, tc.want)
		}
	}
}
