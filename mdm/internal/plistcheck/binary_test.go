package plistcheck

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/groob/plist"
)

// nestedArraysBinary returns depth arrays nested inside each other, the
// innermost one empty.
func nestedArraysBinary(depth int) []byte {
	var b builder
	idx := b.array()
	for i := 1; i < depth; i++ {
		idx = b.array(idx)
	}
	return b.bytes(idx)
}

// smallDict is a well-formed binary plist {"a": "b", "n": 1}.
func smallDict() []byte {
	var b builder
	return b.bytes(b.dict([]uint64{b.ascii("a"), b.ascii("n")}, []uint64{b.ascii("b"), b.uint(1)}))
}

// leafIn returns a binary plist whose root dict {"k": leaf} holds the given
// raw leaf object. The leaf is the last object, right before the offset
// table, so a leaf that claims more bytes than it has runs off the end of
// the object area.
func leafIn(leaf ...byte) []byte {
	var b builder
	d := b.dict([]uint64{1}, []uint64{2})
	b.ascii("k")
	b.raw(leaf...)
	return b.bytes(d)
}

// sharedRefs returns an array holding n references to one shared string s.
func sharedRefs(s string, n int) []byte {
	var b builder
	str := b.ascii(s)
	refs := make([]uint64, n)
	for i := range refs {
		refs[i] = str
	}
	return b.bytes(b.array(refs...))
}

// distinctInts returns an array of n distinct integer objects.
func distinctInts(n int) []byte {
	var b builder
	refs := make([]uint64, n)
	for i := range refs {
		refs[i] = b.uint(uint64(i))
	}
	return b.bytes(b.array(refs...))
}

// laughs returns a DAG of levels arrays, each holding fanout references to
// the one below, over a single string: fanout^levels visits from a few
// hundred bytes.
func laughs(levels, fanout int) []byte {
	var b builder
	idx := b.ascii("lol")
	for i := 0; i < levels; i++ {
		refs := make([]uint64, fanout)
		for j := range refs {
			refs[j] = idx
		}
		idx = b.array(refs...)
	}
	return b.bytes(idx)
}

// setOffset returns a copy of data whose offset table entry i is off.
func setOffset(data []byte, i int, off uint64) []byte {
	out := append([]byte(nil), data...)
	t := out[len(out)-trailerSize:]
	size := int(t[6])
	table := int(binary.BigEndian.Uint64(t[24:]))
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], off)
	copy(out[table+i*size:], buf[8-size:])
	return out
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

type checkCase struct {
	name string
	data []byte
	lim  Limits
	want error // sentinel, or nil
}

func runCheckCases(t *testing.T, cases []checkCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.data, tc.lim)
			if have := sentinel(t, err); have != tc.want {
				t.Fatalf("Check: have %v, want %v", err, tc.want)
			}
			if err == nil {
				// Whatever Check accepts, groob must decode without
				// panicking and quickly.
				groobDecode(t, tc.data)
			}
		})
	}
}

func TestBinaryHostile(t *testing.T) {
	t.Parallel()
	def := DefaultLimits
	base := smallDict() // 5 objects: "a", "n", "b", 1, the dict (root 4)
	var cases []checkCase
	add := func(name string, data []byte, lim Limits, want error) {
		cases = append(cases, checkCase{name, data, lim, want})
	}

	add("valid small dict", base, def, nil)

	// Cycles.
	{
		var b builder
		a := b.array(b.next())
		add("self-referencing array", b.bytes(a), def, ErrMalformed)
	}
	{
		var b builder
		k := b.ascii("a")
		d0 := b.dict([]uint64{k}, []uint64{b.next() + 1})
		b.dict([]uint64{k}, []uint64{d0})
		add("cyclic dicts", b.bytes(d0), def, ErrMalformed)
	}
	{
		var b builder
		k := b.ascii("a")
		d := b.dict([]uint64{k}, []uint64{b.next()})
		add("dict containing itself", b.bytes(d), def, ErrMalformed)
	}
	{
		var b builder
		k := b.ascii("a")
		d := b.dict([]uint64{b.next()}, []uint64{k})
		add("dict whose key is itself", b.bytes(d), def, ErrMalformed)
	}
	{
		// A cycle far below the root, entered through a shared node.
		var b builder
		leaf := b.ascii("x")
		loopA := b.next()
		b.array(leaf, loopA+1)
		b.array(leaf, loopA)
		root := b.array(leaf, loopA, leaf)
		add("cycle below the root", b.bytes(root), def, ErrMalformed)
	}

	// Counts larger than the file.
	add("array count 2^64-1", leafIn(append([]byte{0xaf, 0x13}, u64(math.MaxUint64)...)...), def, ErrMalformed)
	add("array count 2^61 (count*8 overflows)", leafIn(append([]byte{0xaf, 0x13}, u64(1<<61)...)...), def, ErrMalformed)
	add("dict count 2^62 (2*count*refsize overflows)", leafIn(append([]byte{0xdf, 0x13}, u64(1<<62)...)...), def, ErrMalformed)
	add("utf16 count 2^63 (2*count overflows)", leafIn(append([]byte{0x6f, 0x13}, u64(1<<63)...)...), def, ErrMalformed)
	add("data count 2^32", leafIn(0x4f, 0x13, 0, 0, 0, 1, 0, 0, 0, 0), def, ErrMalformed)
	add("ascii count 4096 in a small file", leafIn(0x5f, 0x11, 0x10, 0x00, 'a'), def, ErrMalformed)
	add("ascii count one past the objects", leafIn(0x53, 'a', 'b'), def, ErrMalformed)
	add("ascii count exactly fits", leafIn(0x53, 'a', 'b', 'c'), def, nil)
	add("utf16 one unit short", leafIn(0x62, 0, 'a', 0), def, ErrMalformed)
	add("array one ref short", leafIn(0xa2, 0), def, ErrMalformed)
	add("extended count with 16-byte int", leafIn(0x5f, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 'a'), def, ErrMalformed)
	add("extended count with non-int marker", leafIn(0x5f, 0x20, 1, 'a'), def, ErrMalformed)
	add("extended count truncated", leafIn(0x5f, 0x12, 0), def, ErrMalformed)
	add("extended count marker missing", leafIn(0x5f), def, ErrMalformed)
	add("extended count, valid", leafIn(append([]byte{0x5f, 0x10, 20}, strings.Repeat("z", 20)...)...), def, nil)

	// Fixed-size objects.
	add("integer 1 byte", leafIn(0x10, 5), def, nil)
	add("integer 16 bytes", leafIn(append([]byte{0x14}, make([]byte, 16)...)...), def, nil)
	add("integer 32 bytes", leafIn(append([]byte{0x15}, make([]byte, 32)...)...), def, ErrMalformed)
	add("integer truncated", leafIn(0x13, 1, 2), def, ErrMalformed)
	add("real 8 bytes", leafIn(0x23, 0x40, 0, 0, 0, 0, 0, 0, 0), def, nil)
	add("real 2 bytes", leafIn(0x21, 0, 0), def, ErrMalformed)
	add("real 2^15 bytes", leafIn(0x2f, 0), def, ErrMalformed)
	add("real truncated", leafIn(0x23, 0x40, 0), def, ErrMalformed)
	add("date", leafIn(0x33, 0x41, 0, 0, 0, 0, 0, 0, 0), def, nil)
	add("date wrong size", leafIn(0x32, 0, 0, 0, 0), def, ErrMalformed)
	add("date truncated", leafIn(0x33, 0, 0), def, ErrMalformed)
	add("null", leafIn(0x00), def, nil)
	add("fill", leafIn(0x0f), def, nil)
	add("unknown singleton", leafIn(0x01), def, ErrMalformed)
	add("uid", leafIn(0x81, 0, 1), def, nil)
	add("uid truncated", leafIn(0x83, 0), def, ErrMalformed)
	for _, m := range []byte{0x70, 0x90, 0xb0, 0xe0, 0xf0} {
		add(fmt.Sprintf("unknown marker 0x%02x", m), leafIn(m), def, ErrMalformed)
	}
	{
		var b builder
		one := b.uint(1)
		add("dict key not a string", b.bytes(b.dict([]uint64{one}, []uint64{one})), def, ErrMalformed)
	}
	{
		var b builder
		s := b.add(countHead(typeSet, 2), b.next()+1, b.next()+2)
		b.ascii("x")
		b.ascii("y")
		add("set of strings", b.bytes(b.dict([]uint64{b.ascii("s")}, []uint64{s})), def, nil)
	}

	// Trailer.
	add("too short", []byte("bplist00\x00"), def, ErrMalformed)
	add("wrong version", append([]byte("bplist01"), base[8:]...), def, ErrMalformed)
	for _, size := range []byte{0, 3, 9, 255} {
		add(fmt.Sprintf("offset int size %d", size), editTrailer(base, func(t *trailer) { t.offSize = size }), def, ErrMalformed)
		add(fmt.Sprintf("object ref size %d", size), editTrailer(base, func(t *trailer) { t.refSize = size }), def, ErrMalformed)
	}
	add("zero objects", editTrailer(base, func(t *trailer) { t.numObjs = 0 }), def, ErrMalformed)
	add("one object more than the table holds", editTrailer(base, func(t *trailer) { t.numObjs++ }), def, ErrMalformed)
	add("4M objects", editTrailer(base, func(t *trailer) { t.numObjs = 4 << 20 }), def, ErrMalformed)
	add("2^64-1 objects", editTrailer(base, func(t *trailer) { t.numObjs = math.MaxUint64 }), def, ErrMalformed)
	add("fewer objects than the table holds", editTrailer(base, func(t *trailer) { t.numObjs = 4; t.root = 0 }), def, nil)
	add("root is a leaf", editTrailer(base, func(t *trailer) { t.root = 3 }), def, nil)
	add("root == num objects", editTrailer(base, func(t *trailer) { t.root = t.numObjs }), def, ErrMalformed)
	add("root 2^64-1", editTrailer(base, func(t *trailer) { t.root = math.MaxUint64 }), def, ErrMalformed)
	add("offset table at 0", editTrailer(base, func(t *trailer) { t.table = 0 }), def, ErrMalformed)
	add("offset table at header end", editTrailer(base, func(t *trailer) { t.table = 8 }), def, ErrMalformed)
	add("offset table at trailer", editTrailer(base, func(t *trailer) { t.table = uint64(len(base) - trailerSize) }), def, ErrMalformed)
	add("offset table runs into trailer", editTrailer(base, func(t *trailer) { t.table += 2 }), def, ErrMalformed)
	add("offset table past the file", editTrailer(base, func(t *trailer) { t.table = uint64(len(base)) + 100 }), def, ErrMalformed)
	add("offset table at 2^63", editTrailer(base, func(t *trailer) { t.table = 1 << 63 }), def, ErrMalformed)
	add("offset table at 2^64-1", editTrailer(base, func(t *trailer) { t.table = math.MaxUint64 }), def, ErrMalformed)
	{
		table := binary.BigEndian.Uint64(base[len(base)-8:])
		add("object offset at the offset table", setOffset(base, 0, table), def, ErrMalformed)
		add("object offset past the file", setOffset(base, 2, 250), def, ErrMalformed)
		add("object offset in the header", setOffset(base, 1, 3), def, ErrMalformed)
	}

	// References.
	{
		var b builder
		a := b.array(b.next() + 1) // one object; ref 1 == numObjects
		add("ref == num objects", b.bytes(a), def, ErrMalformed)
	}
	{
		var b builder
		a := b.array(b.next() + 7)
		add("ref > num objects", b.bytes(a), def, ErrMalformed)
	}
	{
		var b builder
		b.refSize = 8
		a := b.array(math.MaxUint64)
		add("ref 2^64-1", b.bytes(a), def, ErrMalformed)
	}
	{
		var b builder
		k := b.ascii("k")
		d := b.dict([]uint64{k}, []uint64{b.next() + 1})
		add("dict value ref == num objects", b.bytes(d), def, ErrMalformed)
	}
	{
		var b builder
		b.refSize, b.offSize = 8, 8
		s := b.ascii("wide")
		add("8-byte refs and offsets", b.bytes(b.array(s, s)), def, nil)
	}

	// Depth.
	add("depth 32 (max)", nestedArraysBinary(32), def, nil)
	add("depth 33", nestedArraysBinary(33), def, ErrTooDeep)
	add("depth 1000", nestedArraysBinary(1000), def, ErrTooDeep)
	add("depth 5 of 5", nestedArraysBinary(5), Limits{MaxDepth: 5}, nil)
	add("depth 6 of 5", nestedArraysBinary(6), Limits{MaxDepth: 5}, ErrTooDeep)
	add("depth 10_000 (cap)", nestedArraysBinary(10_000), Limits{MaxDepth: 1 << 30}, nil)
	add("depth 10_001 over the cap", nestedArraysBinary(10_001), Limits{MaxDepth: 1 << 30}, ErrTooDeep)

	// Elements. An array of n refs is n+1 elements.
	add("100_000 elements (max)", sharedRefs("x", 99_999), def, nil)
	add("100_001 elements", sharedRefs("x", 100_000), def, ErrTooManyElements)
	add("10 distinct of 10", distinctInts(9), Limits{MaxElements: 10}, nil)
	add("11 distinct of 10", distinctInts(10), Limits{MaxElements: 10}, ErrTooManyElements)
	add("dict keys count", smallDict(), Limits{MaxElements: 4}, ErrTooManyElements)
	add("dict keys count, at limit", smallDict(), Limits{MaxElements: 5}, nil)

	// Shared references (a DAG) are legal but count on every visit.
	add("DAG 2^15 leaves (65535 visits from 105 bytes)", laughs(15, 2), def, ErrTooManyElements)
	{
		var b builder
		shared := b.dict([]uint64{b.next() + 1}, []uint64{b.next() + 2})
		b.ascii("key")
		b.ascii("value")
		add("dict shared by two arrays", b.bytes(b.array(b.array(shared), b.array(shared))), def, nil)
	}
	add("DAG 2^30 leaves", laughs(30, 2), def, ErrTooManyElements)
	add("DAG 10^9 leaves", laughs(9, 10), def, ErrTooManyElements)
	add("DAG 40 levels deep", laughs(40, 2), def, ErrTooDeep)

	// Byte expansion through a shared string.
	big := strings.Repeat("A", 64<<10)
	add("64 KiB string shared 8 times", sharedRefs(big, 8), def, nil)
	add("64 KiB string shared 2000 times", sharedRefs(big, 2000), def, ErrTooManyElements)

	runCheckCases(t, cases)
}

// TestGroobHazards shows that what Check rejects does break groob/plist:
// each input here panics it (recoverably; cycles, which overflow the stack
// fatally, cannot be shown this way).
func TestGroobHazards(t *testing.T) {
	t.Parallel()
	base := smallDict()
	var refEqN builder
	refEqNData := refEqN.bytes(refEqN.array(1))
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"ref == num objects (index > len off-by-one)", refEqNData},
		{"root == num objects", editTrailer(base, func(t *trailer) { t.root = t.numObjs })},
		{"object ref size 9", editTrailer(base, func(t *trailer) { t.refSize = 9 })},
		{"array count 2^62", leafIn(append([]byte{0xaf, 0x13}, u64(1<<62)...)...)},
		{"utf16 count 2^62", leafIn(append([]byte{0x6f, 0x13}, u64(1<<62)...)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := Check(tc.data, DefaultLimits); sentinel(t, err) != ErrMalformed {
				t.Fatalf("Check: have %v, want ErrMalformed", err)
			}
			panicked := func() (p any) {
				defer func() { p = recover() }()
				var v any
				_ = plist.Unmarshal(tc.data, &v)
				return nil
			}()
			if panicked == nil {
				t.Errorf("groob/plist did not panic; the hazard this case guards against may be gone")
			}
		})
	}
}
