package cryptoutil

import (
	"errors"
	"fmt"
)

// maxBERDepth bounds how deeply constructed elements may nest in a CMS
// message we accept. A real Mdm-Signature nests about ten levels deep (the
// distinguished names inside the certificate are the deepest part).
const maxBERDepth = 32

// maxBERTagBytes bounds the number of bytes in a high-number tag. No tag used
// by CMS or X.509 needs more than the identifier octet.
const maxBERTagBytes = 4

// maxBERIndefiniteItems bounds the total number of elements found directly
// inside indefinite-length elements. Finding the end of an indefinite-length
// element means walking its children, and the parser does that once for
// every indefinite-length element it reads on its way down; the bound keeps
// that work small whatever the input. A real Mdm-Signature has under a
// dozen.
const maxBERIndefiniteItems = 256

var (
	errBERTruncated = errors.New("ber element runs past the end of its container")
	errBERTooDeep   = fmt.Errorf("ber nesting deeper than %d levels", maxBERDepth)
	errBERTooWide   = fmt.Errorf("more than %d elements inside indefinite-length ber elements", maxBERIndefiniteItems)
)

// Identifier octets of the universal and context-specific elements the CMS
// parser looks for. The constructed bit (0x20) is part of the value.
const (
	berInteger     = 0x02
	berOctetString = 0x04
	berOID         = 0x06
	berSequence    = 0x30
	berSet         = 0x31
	berContext0    = 0xa0 // [0], constructed
	berContext1    = 0xa1 // [1], constructed
)

// checkBER returns an error unless data is exactly one well-formed BER
// element whose constructed elements nest at most maxBERDepth levels deep and
// hold, counted over all indefinite-length ones, at most
// maxBERIndefiniteItems elements. High tag numbers must be minimally encoded,
// and an end-of-contents marker may only end an indefinite-length element.
// The walk recurses at most maxBERDepth levels and allocates nothing.
func checkBER(data []byte) error {
	return checkEncoding(data, false)
}

// checkCMSEncoding is checkBER with two further rules for the CMS parser,
// both about BER that github.com/smallstep/pkcs7 (the parser this package
// used before, and the reference its tests compare against) reads
// differently from X.690: an indefinite-length element must not be empty
// (pkcs7 takes the end-of-contents marker for a child and reads on past
// it), and a long-form length must not start with a zero octet (pkcs7
// refuses it). Devices do neither.
func checkCMSEncoding(data []byte) error {
	return checkEncoding(data, true)
}

// checkEncoding walks data as one BER element with the limits above;
// strict adds the rules of checkCMSEncoding.
func checkEncoding(data []byte, strict bool) error {
	w := berWalker{strict: strict}
	n, err := w.walk(data, 0)
	if err != nil {
		return err
	}
	if n != len(data) {
		return fmt.Errorf("%d bytes of trailing data after ber element", len(data)-n)
	}
	return nil
}

// berHeader is the identifier and length octets of one element.
type berHeader struct {
	// ident is the first identifier octet: class, constructed bit and
	// tag number, or 0x1f in the low bits for a high tag number (whose
	// value no caller needs: it never matches an element CMS uses).
	ident byte
	// size is the number of identifier and length octets.
	size int
	// length is the number of content octets, or -1 for an
	// indefinite length.
	length int
	// minimal reports a definite length in the fewest octets, as DER
	// wants it.
	minimal bool
}

// constructed reports whether the element holds other elements.
func (h berHeader) constructed() bool { return h.ident&0x20 != 0 }

// parseBERHeader reads the identifier and length octets at the start of
// data. A definite length must fit in the rest of data. With strict, a
// long-form length may not start with a zero octet.
func parseBERHeader(data []byte, strict bool) (berHeader, error) {
	var h berHeader
	pos := 0
	if pos >= len(data) {
		return h, errBERTruncated
	}
	h.ident = data[pos]
	pos++
	if h.ident&0x1f == 0x1f {
		// High tag number: base-128 digits, the last one without bit 8.
		// X.690 8.1.2.4 wants them minimal: no leading zero digit, and
		// only for numbers the low form cannot hold.
		number := 0
		for i := 0; ; i++ {
			if i == maxBERTagBytes {
				return h, fmt.Errorf("ber tag number longer than %d bytes", maxBERTagBytes)
			}
			if pos >= len(data) {
				return h, errBERTruncated
			}
			b := data[pos]
			pos++
			if i == 0 && b == 0x80 {
				return h, errors.New("ber tag number with a leading zero digit")
			}
			number = number<<7 | int(b&0x7f)
			if b&0x80 == 0 {
				break
			}
		}
		if number < 0x1f {
			return h, errors.New("ber tag number in the long form below 31")
		}
	}

	if pos >= len(data) {
		return h, errBERTruncated
	}
	first := data[pos]
	pos++
	switch {
	case first == 0x80:
		if !h.constructed() {
			return h, errors.New("ber primitive element with indefinite length")
		}
		h.size, h.length = pos, -1
		return h, nil
	case first < 0x80:
		h.length = int(first)
		h.minimal = true
	default:
		count := int(first & 0x7f)
		if count > 4 {
			// Also rejects 0xff, which X.690 reserves.
			return h, fmt.Errorf("ber length field of %d bytes", count)
		}
		if len(data)-pos < count {
			return h, errBERTruncated
		}
		if strict && data[pos] == 0 {
			return h, errors.New("ber length field with a leading zero byte")
		}
		var length uint64
		for _, b := range data[pos : pos+count] {
			length = length<<8 | uint64(b)
		}
		pos += count
		if length > uint64(len(data)-pos) {
			return h, errBERTruncated
		}
		h.length = int(length)
		h.minimal = data[pos-count] != 0 && length >= 0x80
	}
	if h.length > len(data)-pos {
		return h, errBERTruncated
	}
	h.size = pos
	return h, nil
}

// isEndOfContents reports whether data starts with the end-of-contents
// octets (00 00) that close an indefinite-length element.
func isEndOfContents(data []byte) bool {
	return len(data) >= 2 && data[0] == 0 && data[1] == 0
}

// berWalker holds the budget shared by one walk.
type berWalker struct {
	indefiniteItems int
	strict          bool
	// skim, when set, only measures elements: the content of a
	// definite-length element is skipped rather than walked, so only
	// indefinite-length elements are looked into. It is for data that
	// has already passed a full walk.
	skim bool
}

// walk checks the element at the start of data, and everything nested in
// it, and returns the element's encoded length. Children of a definite-length
// element must fit inside it exactly; children of an indefinite-length
// element run until the end-of-contents octets (00 00).
func (w *berWalker) walk(data []byte, depth int) (int, error) {
	if depth > maxBERDepth {
		return 0, errBERTooDeep
	}
	h, err := parseBERHeader(data, w.strict)
	if err != nil {
		return 0, err
	}
	if h.ident&^0x20 == 0 {
		// Tag 0 of the universal class is reserved for end-of-contents,
		// which the loop below consumes; anywhere else it is malformed.
		return 0, errors.New("ber end-of-contents outside an indefinite-length element")
	}
	pos := h.size

	if h.length < 0 {
		if w.strict && isEndOfContents(data[pos:]) {
			return 0, errors.New("ber indefinite-length element with no content")
		}
		for {
			if len(data)-pos < 2 {
				return 0, errBERTruncated
			}
			if isEndOfContents(data[pos:]) {
				return pos + 2, nil
			}
			w.indefiniteItems++
			if w.indefiniteItems > maxBERIndefiniteItems {
				return 0, errBERTooWide
			}
			n, err := w.walk(data[pos:], depth+1)
			if err != nil {
				return 0, err
			}
			pos += n
		}
	}

	end := pos + h.length
	if h.constructed() && !w.skim {
		content := data[pos:end]
		for off := 0; off < len(content); {
			n, err := w.walk(content[off:], depth+1)
			if err != nil {
				return 0, err
			}
			off += n
		}
	}
	return end, nil
}

// berElement is one element read by berReader.
type berElement struct {
	ident byte   // first identifier octet, as in berHeader
	full  []byte // the whole encoding, end-of-contents octets included
	// content is the content octets. For an indefinite-length element it
	// is the encodings of its children, without the end-of-contents
	// octets, so in both forms it holds the children exactly.
	content    []byte
	indefinite bool
}

// children returns a reader over the elements inside e.
func (e berElement) children() berReader { return berReader{rest: e.content} }

// berReader reads a run of elements one after the other. It handles
// definite and indefinite lengths alike and copies nothing: every element
// it returns points into the input.
//
// It is meant for input that has already passed checkCMSEncoding, which
// bounds its depth and the work of finding where each indefinite-length
// element ends; on any other input it still returns errors rather than
// panicking.
type berReader struct {
	rest []byte
}

// empty reports whether all elements have been read.
func (r *berReader) empty() bool { return len(r.rest) == 0 }

// peek returns the identifier octet of the next element, or 0 when there
// is none.
func (r *berReader) peek() byte {
	if len(r.rest) == 0 {
		return 0
	}
	return r.rest[0]
}

// next reads the next element.
func (r *berReader) next() (berElement, error) {
	h, err := parseBERHeader(r.rest, true)
	if err != nil {
		return berElement{}, err
	}
	var e berElement
	e.ident = h.ident
	if h.length >= 0 {
		end := h.size + h.length
		e.full, e.content = r.rest[:end], r.rest[h.size:end]
	} else {
		w := berWalker{strict: true, skim: true}
		n, err := w.walk(r.rest, 0)
		if err != nil {
			return berElement{}, err
		}
		e.full, e.content, e.indefinite = r.rest[:n], r.rest[h.size:n-2], true
	}
	r.rest = r.rest[len(e.full):]
	return e, nil
}

// expect reads the next element and checks its identifier octet; what
// names the element in the error.
func (r *berReader) expect(ident byte, what string) (berElement, error) {
	if r.empty() {
		return berElement{}, fmt.Errorf("%s missing", what)
	}
	e, err := r.next()
	if err != nil {
		return berElement{}, fmt.Errorf("%s: %w", what, err)
	}
	if e.ident != ident {
		return berElement{}, fmt.Errorf("%s: identifier %#02x, want %#02x", what, e.ident, ident)
	}
	return e, nil
}

// isDER reports whether every length in the element at the start of data,
// and in everything nested in it, is definite and minimal, so that its
// bytes are what a DER encoder would write for the same structure
// (ordering of SET OF aside). It expects input that passed
// checkCMSEncoding, and reports false for anything else.
func isDER(data []byte, depth int) (int, bool) {
	if depth > maxBERDepth {
		return 0, false
	}
	h, err := parseBERHeader(data, true)
	if err != nil || h.length < 0 {
		return 0, false
	}
	if !h.minimal {
		return 0, false
	}
	end := h.size + h.length
	if h.constructed() {
		for off := h.size; off < end; {
			n, ok := isDER(data[off:end], depth+1)
			if !ok {
				return 0, false
			}
			off += n
		}
	}
	return end, true
}
