// Package plistcheck vets untrusted property lists before they reach
// github.com/groob/plist.
//
// The groob/plist decoder trusts its input. Its binary parser sizes
// allocations from counts read out of the file, indexes its offset table
// with an off-by-one bound, and follows object references recursively with
// no cycle or depth check, so a crafted binary plist can make it panic,
// exhaust memory, or overflow the goroutine stack (a fatal error that
// recover cannot catch). Its XML parser recurses once per nesting level.
//
// Check walks the same structure groob/plist would walk, but with explicit
// bounds and without recursion, and accepts only input that groob/plist can
// then decode in time and memory proportional to the input size.
package plistcheck

import (
	"bytes"
	"errors"
)

// Limits bounds what a plist may contain.
type Limits struct {
	// MaxDepth bounds the nesting of arrays and dicts. A root dict
	// holding only leaf values has depth 1. Zero or less means 32; more
	// than maxDepthCap (10_000) means maxDepthCap, since groob/plist
	// recurses once per level.
	MaxDepth int
	// MaxElements bounds the number of values, dict keys included. In a
	// binary plist an object reached through several references counts
	// once per reference, as groob/plist decodes it once per reference;
	// a binary plist may also not reach more values than it has bytes,
	// which only shared arrays or dicts (never written by real encoders)
	// can do. Zero or less means 100_000.
	MaxElements int
}

// DefaultLimits are the limits used for device requests.
var DefaultLimits = Limits{MaxDepth: 32, MaxElements: 100_000}

// Errors returned by Check wrap exactly one of these sentinels.
var (
	// ErrTooDeep means arrays and dicts nest deeper than Limits.MaxDepth.
	ErrTooDeep = errors.New("plist nested too deeply")
	// ErrTooManyElements means the plist holds more than
	// Limits.MaxElements values, or a binary plist expands through shared
	// objects to more values than it has bytes, or to more string and
	// data bytes than 8 times its size plus 1 MiB.
	ErrTooManyElements = errors.New("plist has too many elements")
	// ErrMalformed means the input is not a well-formed XML document or
	// not a structurally sound binary plist.
	ErrMalformed = errors.New("malformed plist")
)

// binaryPrefix is what groob/plist.Unmarshal looks for to pick its binary
// parser; anything else goes to its XML parser.
const binaryPrefix = "bplist0"

// Check returns nil if data is safe to hand to groob/plist.Unmarshal:
// decoding it cannot panic, recurse deeper than lim.MaxDepth, visit more
// than lim.MaxElements values, or allocate much more than a small multiple
// of len(data). Check does not promise that the decode succeeds; semantic
// errors (a dict key that is not a string, a bad integer literal) are left
// to groob/plist.
//
// Like groob/plist.Unmarshal, Check treats data that begins with "bplist0"
// as a binary plist and anything else as XML.
func Check(data []byte, lim Limits) error {
	lim = lim.withDefaults()
	if bytes.HasPrefix(data, []byte(binaryPrefix)) {
		return checkBinary(data, lim)
	}
	return checkXML(data, lim)
}

// maxDepthCap bounds MaxDepth whatever the caller asks for, so that
// groob/plist's recursion stays far from the goroutine stack limit.
const maxDepthCap = 10_000

func (l Limits) withDefaults() Limits {
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultLimits.MaxDepth
	}
	l.MaxDepth = min(l.MaxDepth, maxDepthCap)
	if l.MaxElements <= 0 {
		l.MaxElements = DefaultLimits.MaxElements
	}
	return l
}
