package storagetest

import (
	"encoding/binary"
	"fmt"
	"sort"
	"unicode/utf16"
)

// EncodeBinaryPlist encodes v as a binary property list ("bplist00"), the
// form some devices send. It knows just enough of the format for test
// messages: dictionaries with string keys (map[string]any), arrays
// ([]any), strings,
// data ([]byte), booleans and integers. Devices' binary messages are never
// valid UTF-8, which makes them a good probe of byte-for-byte storage.
func EncodeBinaryPlist(v any) ([]byte, error) {
	var e bplistEncoder
	if _, err := e.add(v); err != nil {
		return nil, err
	}
	return e.finish(), nil
}

// bplistEncoder collects the object table. Object references are always
// two bytes and offsets four, which the format allows for any size.
type bplistEncoder struct {
	objects [][]byte
}

func (e *bplistEncoder) add(v any) (int, error) {
	idx := len(e.objects)
	e.objects = append(e.objects, nil)
	if idx > 0xFFFF {
		return 0, fmt.Errorf("binary plist: more than %d objects", 0xFFFF)
	}
	var obj []byte
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		refs := make([]int, 0, 2*len(keys))
		for _, k := range keys {
			ref, err := e.add(k)
			if err != nil {
				return 0, err
			}
			refs = append(refs, ref)
		}
		for _, k := range keys {
			ref, err := e.add(v[k])
			if err != nil {
				return 0, fmt.Errorf("binary plist: key %q: %w", k, err)
			}
			refs = append(refs, ref)
		}
		obj = bplistMarker(0xD, len(keys))
		for _, ref := range refs {
			obj = binary.BigEndian.AppendUint16(obj, uint16(ref))
		}
	case []any:
		refs := make([]int, 0, len(v))
		for i, elem := range v {
			ref, err := e.add(elem)
			if err != nil {
				return 0, fmt.Errorf("binary plist: element %d: %w", i, err)
			}
			refs = append(refs, ref)
		}
		obj = bplistMarker(0xA, len(refs))
		for _, ref := range refs {
			obj = binary.BigEndian.AppendUint16(obj, uint16(ref))
		}
	case string:
		if isASCII(v) {
			obj = append(bplistMarker(0x5, len(v)), v...)
		} else {
			units := utf16.Encode([]rune(v))
			obj = bplistMarker(0x6, len(units))
			for _, u := range units {
				obj = binary.BigEndian.AppendUint16(obj, u)
			}
		}
	case []byte:
		obj = append(bplistMarker(0x4, len(v)), v...)
	case bool:
		obj = []byte{0x08}
		if v {
			obj[0] = 0x09
		}
	case int:
		obj = binary.BigEndian.AppendUint64([]byte{0x13}, uint64(v))
	default:
		return 0, fmt.Errorf("binary plist: unsupported type %T", v)
	}
	e.objects[idx] = obj
	return idx, nil
}

// bplistMarker returns the marker byte of an object of the given kind and
// element count, followed by the count as an integer object when it does
// not fit in the marker's low nibble.
func bplistMarker(kind byte, n int) []byte {
	if n < 0xF {
		return []byte{kind<<4 | byte(n)}
	}
	b := []byte{kind<<4 | 0xF}
	switch {
	case n <= 0xFF:
		return append(b, 0x10, byte(n))
	case n <= 0xFFFF:
		return binary.BigEndian.AppendUint16(append(b, 0x11), uint16(n))
	default:
		return binary.BigEndian.AppendUint32(append(b, 0x12), uint32(n))
	}
}

func (e *bplistEncoder) finish() []byte {
	out := []byte("bplist00")
	offsets := make([]uint32, len(e.objects))
	for i, obj := range e.objects {
		offsets[i] = uint32(len(out))
		out = append(out, obj...)
	}
	tableOffset := len(out)
	for _, off := range offsets {
		out = binary.BigEndian.AppendUint32(out, off)
	}
	// Trailer: five unused bytes, sort version, offset size, reference
	// size, object count, root object, offset-table offset.
	out = append(out, 0, 0, 0, 0, 0, 0, 4, 2)
	out = binary.BigEndian.AppendUint64(out, uint64(len(e.objects)))
	out = binary.BigEndian.AppendUint64(out, 0)
	out = binary.BigEndian.AppendUint64(out, uint64(tableOffset))
	return out
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
