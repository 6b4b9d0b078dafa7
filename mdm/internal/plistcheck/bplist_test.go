package plistcheck

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"time"
	"unicode/utf16"
)

// This file holds a small binary plist writer for tests only: groob/plist
// can read binary plists but not write them. builder collects objects and
// lays them out as header, objects, offset table, trailer. References are
// plain object indexes, so tests can point anywhere, including at objects
// not added yet (cycles) or past the end (hostile refs).

type object struct {
	head []byte   // marker, count and any leaf payload
	refs []uint64 // references, written after head at the ref size
}

type builder struct {
	objs []object
	// refSize and offSize force the trailer sizes; 0 picks the smallest
	// that fits.
	refSize int
	offSize int
}

// next returns the index the next added object will get.
func (b *builder) next() uint64 { return uint64(len(b.objs)) }

func (b *builder) add(head []byte, refs ...uint64) uint64 {
	b.objs = append(b.objs, object{head: head, refs: refs})
	return uint64(len(b.objs) - 1)
}

// raw adds an object from its exact bytes.
func (b *builder) raw(p ...byte) uint64 { return b.add(p) }

// countHead encodes a marker with its count, using the extended form
// (low nibble 0xf, then an integer object) from 15 on.
func countHead(kind byte, n uint64) []byte {
	if n < 15 {
		return []byte{kind<<4 | byte(n)}
	}
	return append([]byte{kind<<4 | 0xf}, intBytes(n)...)
}

// intBytes encodes an integer object in the fewest of 1, 2, 4 or 8 bytes.
func intBytes(v uint64) []byte {
	switch {
	case v <= math.MaxUint8:
		return []byte{0x10, byte(v)}
	case v <= math.MaxUint16:
		return binary.BigEndian.AppendUint16([]byte{0x11}, uint16(v))
	case v <= math.MaxUint32:
		return binary.BigEndian.AppendUint32([]byte{0x12}, uint32(v))
	default:
		return binary.BigEndian.AppendUint64([]byte{0x13}, v)
	}
}

func (b *builder) ascii(s string) uint64 {
	return b.add(append(countHead(typeASCII, uint64(len(s))), s...))
}

func (b *builder) str(s string) uint64 {
	for _, r := range s {
		if r >= 0x80 {
			units := utf16.Encode([]rune(s))
			head := countHead(typeUTF16, uint64(len(units)))
			for _, u := range units {
				head = binary.BigEndian.AppendUint16(head, u)
			}
			return b.add(head)
		}
	}
	return b.ascii(s)
}

func (b *builder) data(p []byte) uint64 {
	return b.add(append(countHead(typeData, uint64(len(p))), p...))
}

func (b *builder) uint(v uint64) uint64 { return b.add(intBytes(v)) }

func (b *builder) real(f float64) uint64 {
	return b.add(binary.BigEndian.AppendUint64([]byte{0x23}, math.Float64bits(f)))
}

func (b *builder) boolean(v bool) uint64 {
	if v {
		return b.raw(0x09)
	}
	return b.raw(0x08)
}

// appleEpoch is 2001-01-01T00:00:00Z in Unix seconds.
const appleEpoch = 978307200

func (b *builder) date(t time.Time) uint64 {
	secs := float64(t.Unix()-appleEpoch) + float64(t.Nanosecond())/1e9
	return b.add(binary.BigEndian.AppendUint64([]byte{0x33}, math.Float64bits(secs)))
}

func (b *builder) array(refs ...uint64) uint64 {
	return b.add(countHead(typeArray, uint64(len(refs))), refs...)
}

func (b *builder) dict(keys, vals []uint64) uint64 {
	if len(keys) != len(vals) {
		panic("dict: keys and values differ in length")
	}
	return b.add(countHead(typeDict, uint64(len(keys))), append(append([]uint64(nil), keys...), vals...)...)
}

// value adds v and everything in it. Supported: string, uint64, int (>= 0),
// float64, bool, []byte, time.Time, []any, map[string]any.
func (b *builder) value(v any) uint64 {
	switch v := v.(type) {
	case string:
		return b.str(v)
	case uint64:
		return b.uint(v)
	case int:
		if v < 0 {
			panic("value: negative ints are not supported")
		}
		return b.uint(uint64(v))
	case float64:
		return b.real(v)
	case bool:
		return b.boolean(v)
	case []byte:
		return b.data(v)
	case time.Time:
		return b.date(v)
	case []any:
		refs := make([]uint64, len(v))
		for i, e := range v {
			refs[i] = b.value(e)
		}
		return b.array(refs...)
	case map[string]any:
		names := make([]string, 0, len(v))
		for k := range v {
			names = append(names, k)
		}
		sort.Strings(names)
		keys := make([]uint64, len(names))
		vals := make([]uint64, len(names))
		for i, k := range names {
			keys[i] = b.str(k)
		}
		for i, k := range names {
			vals[i] = b.value(v[k])
		}
		return b.dict(keys, vals)
	default:
		panic(fmt.Sprintf("value: unsupported type %T", v))
	}
}

// encodeBinary writes v as a binary plist.
func encodeBinary(v any) []byte {
	var b builder
	root := b.value(v)
	return b.bytes(root)
}

func sizeFor(max uint64) int {
	switch {
	case max <= math.MaxUint8:
		return 1
	case max <= math.MaxUint16:
		return 2
	case max <= math.MaxUint32:
		return 4
	default:
		return 8
	}
}

func putSized(dst []byte, v uint64, size int) []byte {
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], v)
	return append(dst, buf[8-size:]...)
}

// bytes lays out the plist with the given root.
func (b *builder) bytes(root uint64) []byte {
	refSize := b.refSize
	if refSize == 0 {
		refSize = sizeFor(uint64(len(b.objs)))
	}
	out := []byte(binaryHeader)
	offsets := make([]uint64, len(b.objs))
	for i, o := range b.objs {
		offsets[i] = uint64(len(out))
		out = append(out, o.head...)
		for _, r := range o.refs {
			out = putSized(out, r, refSize)
		}
	}
	table := uint64(len(out))
	offSize := b.offSize
	if offSize == 0 {
		offSize = sizeFor(table)
	}
	for _, off := range offsets {
		out = putSized(out, off, offSize)
	}
	t := trailer{
		offSize: byte(offSize),
		refSize: byte(refSize),
		numObjs: uint64(len(b.objs)),
		root:    root,
		table:   table,
	}
	return t.appendTo(out)
}

// trailer is the decoded last 32 bytes of a binary plist.
type trailer struct {
	offSize, refSize     byte
	numObjs, root, table uint64
}

func (t trailer) appendTo(out []byte) []byte {
	out = append(out, 0, 0, 0, 0, 0, 0, t.offSize, t.refSize)
	out = binary.BigEndian.AppendUint64(out, t.numObjs)
	out = binary.BigEndian.AppendUint64(out, t.root)
	return binary.BigEndian.AppendUint64(out, t.table)
}

// editTrailer returns a copy of data with its trailer changed by edit.
func editTrailer(data []byte, edit func(t *trailer)) []byte {
	body := data[:len(data)-trailerSize]
	raw := data[len(data)-trailerSize:]
	t := trailer{
		offSize: raw[6],
		refSize: raw[7],
		numObjs: binary.BigEndian.Uint64(raw[8:]),
		root:    binary.BigEndian.Uint64(raw[16:]),
		table:   binary.BigEndian.Uint64(raw[24:]),
	}
	edit(&t)
	return t.appendTo(append([]byte(nil), body...))
}
