package plistcheck

import (
	"fmt"
)

// Layout of a binary plist ("bplist00"): an 8-byte header, the objects, an
// offset table holding the file offset of every object, and a 32-byte
// trailer:
//
//	[0:6]   unused
//	[6]     offset int size: bytes per offset table entry
//	[7]     object ref size: bytes per reference inside arrays and dicts
//	[8:16]  number of objects (= entries in the offset table)
//	[16:24] index of the root object
//	[24:32] file offset of the offset table
//
// All integers are big-endian.
const (
	binaryHeader = "bplist00"
	trailerSize  = 32
	// minBinarySize is a header, a one-byte object, a one-byte offset
	// table and the trailer.
	minBinarySize = len(binaryHeader) + 1 + 1 + trailerSize
)

// A binary plist may share one object between several references, and
// groob/plist decodes (and allocates) a shared object again for every
// reference. The string and data bytes groob/plist would copy, summed over
// every visit, may not exceed expansionFactor*len(data) + expansionSlack.
// The element bound alone does not cover this: 100k references to one
// 1 MiB string are only 100k elements but 100 GB of copies.
const (
	expansionFactor = 8
	expansionSlack  = 1 << 20
)

// Object markers: the high nibble of an object's first byte is its type.
const (
	typeSingleton = 0x0 // null, false, true, fill
	typeInt       = 0x1
	typeReal      = 0x2
	typeDate      = 0x3
	typeData      = 0x4
	typeASCII     = 0x5
	typeUTF16     = 0x6
	typeUID       = 0x8
	typeArray     = 0xa
	typeSet       = 0xc
	typeDict      = 0xd
)

// binaryChecker holds the trailer fields and walk state for one input.
type binaryChecker struct {
	data    []byte
	lim     Limits
	offSize uint64 // bytes per offset table entry
	refSize uint64 // bytes per object reference
	numObjs uint64
	root    uint64
	table   uint64 // offset of the offset table; every object ends at or before it

	elements int
	copied   uint64 // string/data bytes groob would copy so far
	budget   uint64 // limit for copied
	onPath   []uint64
}

// frame is a container on the current path whose references are still
// being walked.
type frame struct {
	obj  uint64 // object index, to clear from onPath when done
	next uint64 // file offset of the next reference
	left uint64 // references still to walk
	keys uint64 // how many of those still to walk are dict keys
}

func checkBinary(data []byte, lim Limits) error {
	c, err := newBinaryChecker(data, lim)
	if err != nil {
		return err
	}
	return c.walk()
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("binary plist: "+format+": %w", append(args, ErrMalformed)...)
}

// newBinaryChecker reads and validates the header, trailer and offset table.
func newBinaryChecker(data []byte, lim Limits) (*binaryChecker, error) {
	if len(data) < minBinarySize {
		return nil, malformed("%d bytes is too short", len(data))
	}
	if string(data[:len(binaryHeader)]) != binaryHeader {
		return nil, malformed("unsupported header %q", data[:len(binaryHeader)])
	}
	trailerAt := uint64(len(data) - trailerSize)
	t := data[trailerAt:]
	c := &binaryChecker{
		data:    data,
		lim:     lim,
		offSize: uint64(t[6]),
		refSize: uint64(t[7]),
		numObjs: beUint(t[8:16]),
		root:    beUint(t[16:24]),
		table:   beUint(t[24:32]),
		budget:  uint64(len(data))*expansionFactor + expansionSlack,
	}
	// groob slices buf[8-size:] with uint8 arithmetic, so a size over 8
	// panics; a size of 0 would let a huge count occupy no bytes.
	if !validIntSize(c.offSize) {
		return nil, malformed("offset int size %d not 1, 2, 4 or 8", c.offSize)
	}
	if !validIntSize(c.refSize) {
		return nil, malformed("object ref size %d not 1, 2, 4 or 8", c.refSize)
	}
	// The offset table sits between the objects (at least one, after the
	// header) and the trailer, and must hold numObjs entries. This also
	// bounds numObjs by len(data), so groob's make([]uint64, numObjs) is
	// proportional to the input.
	if c.table <= uint64(len(binaryHeader)) || c.table >= trailerAt {
		return nil, malformed("offset table at %d, not in [%d,%d)", c.table, len(binaryHeader)+1, trailerAt)
	}
	if c.numObjs == 0 || c.numObjs > (trailerAt-c.table)/c.offSize {
		return nil, malformed("%d objects of %d-byte offsets do not fit in %d-byte offset table",
			c.numObjs, c.offSize, trailerAt-c.table)
	}
	// groob checks index > len(table) rather than >=, so index == numObjs
	// would panic there; every index we accept is < numObjs.
	if c.root >= c.numObjs {
		return nil, malformed("root object %d out of range (%d objects)", c.root, c.numObjs)
	}
	for i := uint64(0); i < c.numObjs; i++ {
		off := c.offset(i)
		if off < uint64(len(binaryHeader)) || off >= c.table {
			return nil, malformed("object %d offset %d outside object area [%d,%d)",
				i, off, len(binaryHeader), c.table)
		}
	}
	return c, nil
}

func validIntSize(n uint64) bool { return n == 1 || n == 2 || n == 4 || n == 8 }

// beUint decodes a big-endian unsigned integer of up to 8 bytes.
func beUint(b []byte) uint64 {
	var v uint64
	for _, x := range b {
		v = v<<8 | uint64(x)
	}
	return v
}

// offset returns the file offset of object i; i < numObjs.
func (c *binaryChecker) offset(i uint64) uint64 {
	at := c.table + i*c.offSize
	return beUint(c.data[at : at+c.offSize])
}

func (c *binaryChecker) setPath(i uint64, on bool) {
	if on {
		c.onPath[i/64] |= 1 << (i % 64)
	} else {
		c.onPath[i/64] &^= 1 << (i % 64)
	}
}

func (c *binaryChecker) isOnPath(i uint64) bool { return c.onPath[i/64]&(1<<(i%64)) != 0 }

// walk visits the object graph from the root depth-first, as groob does,
// but with an explicit stack. Each reference is a visit; a reference to an
// object already on the path from the root is a cycle.
func (c *binaryChecker) walk() error {
	c.onPath = make([]uint64, (c.numObjs+63)/64)
	stack := make([]frame, 0, min(c.lim.MaxDepth, 64))

	push := func(obj uint64, f frame, isContainer bool) error {
		if !isContainer {
			return nil
		}
		if len(stack) >= c.lim.MaxDepth {
			return fmt.Errorf("binary plist: object %d at depth %d exceeds %d: %w",
				obj, len(stack)+1, c.lim.MaxDepth, ErrTooDeep)
		}
		f.obj = obj
		stack = append(stack, f)
		c.setPath(obj, true)
		return nil
	}

	f, isContainer, err := c.visit(c.root, false)
	if err != nil {
		return err
	}
	if err := push(c.root, f, isContainer); err != nil {
		return err
	}
	for len(stack) > 0 {
		top := &stack[len(stack)-1]
		if top.left == 0 {
			c.setPath(top.obj, false)
			stack = stack[:len(stack)-1]
			continue
		}
		ref := beUint(c.data[top.next : top.next+c.refSize])
		top.next += c.refSize
		top.left--
		isKey := top.keys > 0
		if isKey {
			top.keys--
		}
		parent := top.obj
		if ref >= c.numObjs {
			return malformed("object %d references object %d (only %d objects)", parent, ref, c.numObjs)
		}
		if c.isOnPath(ref) {
			return malformed("object %d references its ancestor %d (cycle)", parent, ref)
		}
		f, isContainer, err := c.visit(ref, isKey)
		if err != nil {
			return err
		}
		if err := push(ref, f, isContainer); err != nil {
			return err
		}
	}
	return nil
}

// visit counts and validates object i exactly as groob would read it. For
// an array, set or dict it returns the frame for walking its references.
func (c *binaryChecker) visit(i uint64, mustBeString bool) (f frame, isContainer bool, err error) {
	c.elements++
	if c.elements > c.lim.MaxElements {
		return f, false, fmt.Errorf("binary plist: more than %d elements: %w", c.lim.MaxElements, ErrTooManyElements)
	}
	// Every visit but the root's follows a reference of at least one
	// byte, so without shared containers there are fewer visits than
	// bytes. Encoders (CoreFoundation, Python's plistlib) share strings,
	// numbers and data but never arrays or dicts; only a crafted DAG of
	// containers gets here.
	if c.elements > len(c.data) {
		return f, false, fmt.Errorf("binary plist: %d bytes reach more than %d values through shared containers: %w",
			len(c.data), len(c.data), ErrTooManyElements)
	}
	off := c.offset(i)
	marker := c.data[off]
	kind, low := marker>>4, uint64(marker&0xf)
	pos := off + 1 // first byte after the marker; pos <= c.table
	if mustBeString && kind != typeASCII && kind != typeUTF16 {
		return f, false, malformed("object %d: dict key has marker 0x%02x, not a string", i, marker)
	}

	// need checks that n objects of size bytes each start at pos and end
	// at or before the offset table, without overflowing.
	need := func(n, size uint64) error {
		if room := c.table - pos; n > room/size {
			return malformed("object %d (marker 0x%02x at %d): %dx%d bytes exceed the %d left",
				i, marker, off, n, size, room)
		}
		return nil
	}

	switch kind {
	case typeSingleton:
		switch low {
		case 0x0, 0x8, 0x9, 0xf: // null, false, true, fill
			return f, false, nil
		}
		return f, false, malformed("object %d: unknown singleton marker 0x%02x", i, marker)

	case typeInt:
		// groob reads 1<<low bytes and accepts up to 16.
		if low > 4 {
			return f, false, malformed("object %d: integer of 2^%d bytes", i, low)
		}
		return f, false, need(1<<low, 1)

	case typeReal:
		// groob allocates 1<<low bytes (up to 32 KiB); only 4 and 8 are real.
		if low != 2 && low != 3 {
			return f, false, malformed("object %d: real of 2^%d bytes", i, low)
		}
		return f, false, need(1<<low, 1)

	case typeDate:
		if low != 3 {
			return f, false, malformed("object %d: date marker 0x%02x", i, marker)
		}
		return f, false, need(8, 1)

	case typeUID:
		// groob does not read UIDs; require that they fit anyway.
		return f, false, need(low+1, 1)

	case typeData, typeASCII, typeUTF16, typeArray, typeSet, typeDict:
		// handled below: a count, then that many units.
	default:
		return f, false, malformed("object %d: unknown marker 0x%02x", i, marker)
	}

	count, pos, err := c.readCount(i, marker, pos)
	if err != nil {
		return f, false, err
	}
	switch kind {
	case typeData, typeASCII:
		if err := need(count, 1); err != nil {
			return f, false, err
		}
		return f, false, c.addCopied(count)
	case typeUTF16:
		if err := need(count, 2); err != nil {
			return f, false, err
		}
		return f, false, c.addCopied(2 * count)
	case typeDict:
		// count keys then count values.
		if err := need(count, 2*c.refSize); err != nil {
			return f, false, err
		}
		return frame{next: pos, left: 2 * count, keys: count}, true, nil
	default: // array, set
		// groob does not walk sets (it returns an invalid value), but
		// walking them is harmless and keeps the rules uniform.
		if err := need(count, c.refSize); err != nil {
			return f, false, err
		}
		return frame{next: pos, left: count}, true, nil
	}
}

// readCount decodes the element count of a data, string or container
// object whose marker sits just before pos. A low nibble below 0xf is the
// count itself; 0xf means an integer object follows (marker 0x10..0x13:
// 1, 2, 4 or 8 bytes) holding the count. It returns the count and the
// offset just after it.
func (c *binaryChecker) readCount(i uint64, marker byte, pos uint64) (count, next uint64, err error) {
	if marker&0xf != 0xf {
		return uint64(marker & 0xf), pos, nil
	}
	if pos >= c.table {
		return 0, 0, malformed("object %d: extended count past end of objects", i)
	}
	intMarker := c.data[pos]
	// groob only looks at the low nibble; real encoders write an integer
	// marker, so require one.
	if intMarker>>4 != typeInt || intMarker&0xf > 3 {
		return 0, 0, malformed("object %d: bad extended count marker 0x%02x", i, intMarker)
	}
	n := uint64(1) << (intMarker & 0xf)
	pos++
	if n > c.table-pos {
		return 0, 0, malformed("object %d: %d-byte count past end of objects", i, n)
	}
	return beUint(c.data[pos : pos+n]), pos + n, nil
}

func (c *binaryChecker) addCopied(n uint64) error {
	// n <= len(data) here, so the sum cannot overflow before the check.
	c.copied += n
	if c.copied > c.budget {
		return fmt.Errorf("binary plist: shared strings and data expand past %d bytes: %w", c.budget, ErrTooManyElements)
	}
	return nil
}
