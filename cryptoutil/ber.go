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
// inside indefinite-length elements. The pkcs7 converter looks for the
// end-of-contents marker after each such element by searching the rest of the
// input, so its cost grows with this count times the input size; without a
// bound a 64 KiB header full of tiny elements costs over 100ms of CPU. A real
// Mdm-Signature has under a dozen.
const maxBERIndefiniteItems = 256

var (
	errBERTruncated = errors.New("ber element runs past the end of its container")
	errBERTooDeep   = fmt.Errorf("ber nesting deeper than %d levels", maxBERDepth)
	errBERTooWide   = fmt.Errorf("more than %d elements inside indefinite-length ber elements", maxBERIndefiniteItems)
)

// checkBER returns an error unless data is exactly one well-formed BER
// element whose constructed elements nest at most maxBERDepth levels deep and
// hold, counted over all indefinite-length ones, at most
// maxBERIndefiniteItems elements.
//
// It exists because the BER-to-DER converter inside github.com/smallstep/pkcs7
// recurses once per nesting level with no bound, does not confine a child
// element to the bounds of its definite-length parent, and rescans the rest
// of the input after every child of an indefinite-length element. Walking the
// structure first, with those limits enforced, means the converter only ever
// sees input whose shape and cost are known to be sane. The walk itself
// recurses at most maxBERDepth levels and allocates nothing.
func checkBER(data []byte) error {
	var w berWalker
	n, err := w.walk(data, 0)
	if err != nil {
		return err
	}
	if n != len(data) {
		return fmt.Errorf("%d bytes of trailing data after ber element", len(data)-n)
	}
	return nil
}

// berWalker holds the budget shared by one walk.
type berWalker struct {
	indefiniteItems int
}

// walk checks the element at the start of data, and everything nested in
// it, and returns the element's encoded length. Children of a definite-length
// element must fit inside it exactly; children of an indefinite-length
// element run until the end-of-contents octets (00 00).
func (w *berWalker) walk(data []byte, depth int) (int, error) {
	if depth > maxBERDepth {
		return 0, errBERTooDeep
	}
	pos := 0

	// Identifier octets.
	if pos >= len(data) {
		return 0, errBERTruncated
	}
	ident := data[pos]
	pos++
	constructed := ident&0x20 != 0
	if ident&0x1f == 0x1f {
		// High tag number: base-128 digits, the last one without bit 8.
		for i := 0; ; i++ {
			if i == maxBERTagBytes {
				return 0, fmt.Errorf("ber tag number longer than %d bytes", maxBERTagBytes)
			}
			if pos >= len(data) {
				return 0, errBERTruncated
			}
			b := data[pos]
			pos++
			if b&0x80 == 0 {
				break
			}
		}
	}

	// Length octets.
	if pos >= len(data) {
		return 0, errBERTruncated
	}
	first := data[pos]
	pos++
	if first == 0x80 {
		if !constructed {
			return 0, errors.New("ber primitive element with indefinite length")
		}
		for {
			if len(data)-pos < 2 {
				return 0, errBERTruncated
			}
			if data[pos] == 0 && data[pos+1] == 0 {
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
	var length uint64
	if first < 0x80 {
		length = uint64(first)
	} else {
		count := int(first & 0x7f)
		if count > 4 {
			// Also rejects 0xff, which X.690 reserves.
			return 0, fmt.Errorf("ber length field of %d bytes", count)
		}
		if len(data)-pos < count {
			return 0, errBERTruncated
		}
		for _, b := range data[pos : pos+count] {
			length = length<<8 | uint64(b)
		}
		pos += count
	}
	if length > uint64(len(data)-pos) {
		return 0, errBERTruncated
	}
	end := pos + int(length)

	if constructed {
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
