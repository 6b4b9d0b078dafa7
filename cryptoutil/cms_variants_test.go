package cryptoutil

import (
	"bytes"
	"crypto"
	"fmt"
	"testing"
)

// berNode is one element of a parsed DER message, for re-encoding it with
// BER variations.
type berNode struct {
	header   []byte // identifier octets
	content  []byte // content of a primitive element
	children []*berNode
	cons     bool
}

// parseTree parses the DER element at the start of data into a tree.
func parseTree(tb testing.TB, data []byte) *berNode {
	tb.Helper()
	r := berReader{rest: data}
	e, err := r.next()
	if err != nil {
		tb.Fatalf("parsing tree: %v", err)
	}
	h, _ := parseBERHeader(e.full, false)
	n := &berNode{cons: h.constructed()}
	// The identifier octets are the header minus its length octets.
	lengthOctets := 1
	if h.length >= 0x80 {
		for l := h.length; l > 0; l >>= 8 {
			lengthOctets++
		}
	}
	n.header = e.full[:h.size-lengthOctets]
	if !n.cons {
		n.content = e.content
		return n
	}
	for c := e.children(); !c.empty(); {
		child := parseTree(tb, c.rest)
		c.next()
		n.children = append(n.children, child)
	}
	return n
}

// BER variations applied to one element.
const (
	variantIndefinite   = iota // constructed, with an indefinite length
	variantLongLength          // a short length written in the long form
	variantTrailingNull        // constructed, with a NULL after its children
	variantConstructed         // primitive OCTET STRING made constructed
	variantCount
)

// encode writes the tree in DER, except that the element numbered target
// in pre-order gets the variation v. It reports whether v applied.
func (n *berNode) encode(out []byte, index *int, target, v int) ([]byte, bool) {
	me := *index
	*index++
	applied := false
	var content []byte
	for _, c := range n.children {
		var ok bool
		content, ok = c.encode(content, index, target, v)
		applied = applied || ok
	}
	if !n.cons {
		content = n.content
	}
	header := n.header
	if me == target {
		switch {
		case v == variantIndefinite && n.cons:
			out = append(append(out, header...), 0x80)
			out = append(append(out, content...), 0, 0)
			return out, true
		case v == variantLongLength && len(content) < 0x80:
			out = append(append(out, header...), 0x81, byte(len(content)))
			return append(out, content...), true
		case v == variantTrailingNull && n.cons:
			content = append(content, 0x05, 0x00)
			applied = true
		case v == variantConstructed && !n.cons && len(header) == 1 && header[0] == berOctetString:
			header = []byte{berOctetString | 0x20}
			content = tlv(berOctetString, content)
			applied = true
		}
	}
	out = append(out, header...)
	out = append(out, encodeDefiniteHeader(0, len(content))[1:]...) // length octets
	return append(out, content...), applied
}

// TestBERVariants re-encodes valid messages with one BER variation at a
// time, at every element, and checks that whatever this package accepts
// pkcs7 accepts too. What only pkcs7 accepts is logged (go test -v): it
// should all be in the list at the top of cms.go.
func TestBERVariants(t *testing.T) {
	t.Parallel()
	body := []byte("<plist>body</plist>")
	rsaS, ecS := newSigner(t, newRSAKey(t)), newSigner(t, newECKey(t))
	seeds := map[string][]byte{
		"rsa sha-1":          buildCMS(t, body, cmsMessage{signers: []cmsSigner{{signer: rsaS, hash: crypto.SHA1}}}),
		"p256 sha-256 attrs": buildCMS(t, body, cmsMessage{signers: []cmsSigner{{signer: ecS, hash: crypto.SHA256, attrs: true}}, content: []byte("x")}),
	}
	names := []string{"indefinite", "long length", "trailing null", "constructed"}
	for name, der := range seeds {
		tree := parseTree(t, der)
		var check []byte
		check, _ = tree.encode(check, new(int), -1, 0)
		if !bytes.Equal(check, der) {
			t.Fatalf("%s: the tree does not re-encode to the message", name)
		}
		both, onlyPKCS7 := 0, 0
		elements := 0
		tree.encode(nil, &elements, -1, 0)
		for target := range elements {
			for v := range variantCount {
				index := 0
				variant, ok := tree.encode(nil, &index, target, v)
				if !ok {
					continue
				}
				label := fmt.Sprintf("%s, element %d, %s", name, target, names[v])
				have, err := verifyDetached(variant, body)
				ref, refErr := pkcs7Verify(variant, body)
				switch {
				case err == nil && refErr != nil:
					t.Errorf("%s: accepted, pkcs7 refuses: %v", label, refErr)
				case err == nil && !bytes.Equal(have.Raw, ref.Raw):
					t.Errorf("%s: signer differs from pkcs7's", label)
				case err == nil:
					both++
				case refErr == nil:
					onlyPKCS7++
					t.Logf("%s: only pkcs7 accepts; here: %v", label, err)
				}
			}
		}
		t.Logf("%s: %d variants accepted by both, %d by pkcs7 only", name, both, onlyPKCS7)
		if both == 0 {
			t.Errorf("%s: no variant accepted", name)
		}
	}
}
