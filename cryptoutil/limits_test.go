package cryptoutil

import (
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/smallstep/pkcs7"
)

// oidTestAttribute names the unsigned attribute the tests below use to
// shape a signature: unsigned attributes are not covered by the
// signature, so a device (or an attacker) can put anything there and the
// message still verifies.
var oidTestAttribute = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 55555, 1}

// signer is a key and its certificate.
type signer struct {
	key  crypto.Signer
	cert *x509.Certificate
}

func newSigner(t testing.TB, key crypto.Signer) signer {
	t.Helper()
	return signer{key, newCurrentIdentity(t, key)}
}

// signWithUnsigned returns the DER of a valid detached signature by s over
// body that carries value as an unsigned attribute.
func signWithUnsigned(t *testing.T, s signer, body []byte, value asn1.RawValue) []byte {
	t.Helper()
	key, cert := s.key, s.cert
	sd, err := pkcs7.NewSignedData(body)
	if err != nil {
		t.Fatalf("new signed data: %v", err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	cfg := pkcs7.SignerInfoConfig{ExtraUnsignedAttributes: []pkcs7.Attribute{{Type: oidTestAttribute, Value: value}}}
	if err := sd.AddSigner(cert, key, cfg); err != nil {
		t.Fatalf("adding signer: %v", err)
	}
	sd.Detach()
	der, err := sd.Finish()
	if err != nil {
		t.Fatalf("finishing signature: %v", err)
	}
	return der
}

// nestedSequences is k SEQUENCEs, each holding the next, around a NULL.
func nestedSequences(k int) asn1.RawValue {
	inner := []byte{0x05, 0x00}
	for i := 0; i < k; i++ {
		inner = append(encodeDefiniteHeader(0x30, len(inner)), inner...)
	}
	return asn1.RawValue{FullBytes: inner}
}

// berDepth returns how deep the deepest element of one DER element sits,
// counting as checkBER does: the outermost element is at depth 0.
func berDepth(t *testing.T, der []byte) int {
	t.Helper()
	var walk func(b []byte, depth int) (int, int)
	walk = func(b []byte, depth int) (size, deepest int) {
		var rv asn1.RawValue
		rest, err := asn1.Unmarshal(b, &rv)
		if err != nil {
			t.Fatalf("measuring depth: %v", err)
		}
		deepest = depth
		if rv.IsCompound {
			for c := rv.Bytes; len(c) > 0; {
				n, d := walk(c, depth+1)
				c = c[n:]
				deepest = max(deepest, d)
			}
		}
		return len(b) - len(rest), deepest
	}
	_, d := walk(der, 0)
	return d
}

// TestBERDepthBound signs real messages whose deepest element sits exactly
// at the nesting bound, and one level deeper: the first verifies, the
// second is refused before the CMS parser sees it.
func TestBERDepthBound(t *testing.T) {
	t.Parallel()
	body := []byte("body")
	// With 20 levels the attribute is the deepest part of the message (a
	// certificate nests about ten deep), which gives the depth at which the
	// attribute's value starts.
	const probe = 20
	s := newSigner(t, newECKey(t))
	start := berDepth(t, signWithUnsigned(t, s, body, nestedSequences(probe))) - probe
	k := maxBERDepth - start
	if k <= probe/2 {
		t.Fatalf("the attribute value starts %d deep, too close to the bound %d", start, maxBERDepth)
	}
	at := signWithUnsigned(t, s, body, nestedSequences(k))
	if d := berDepth(t, at); d != maxBERDepth {
		t.Fatalf("built a signature %d deep, want %d", d, maxBERDepth)
	}
	if _, err := VerifyMdmSignature(base64.StdEncoding.EncodeToString(at), body); err != nil {
		t.Errorf("signature nesting %d deep (the bound): %v", maxBERDepth, err)
	}
	over := signWithUnsigned(t, s, body, nestedSequences(k+1))
	if _, err := VerifyMdmSignature(base64.StdEncoding.EncodeToString(over), body); !errors.Is(err, errBERTooDeep) {
		t.Errorf("signature nesting %d deep: have %v, want %v", maxBERDepth+1, err, errBERTooDeep)
	}
}

// signatureOfSize returns a valid signature by s over body whose DER is
// exactly n bytes, padded with an octet string in an unsigned attribute.
// s should hold an RSA key: its signatures always have the same length.
func signatureOfSize(t *testing.T, s signer, body []byte, n int) []byte {
	t.Helper()
	filler := n / 2
	for range 10 {
		value := append(encodeDefiniteHeader(0x04, filler), make([]byte, filler)...)
		der := signWithUnsigned(t, s, body, asn1.RawValue{FullBytes: value})
		if len(der) == n {
			return der
		}
		filler += n - len(der)
	}
	t.Fatalf("could not build a %d-byte signature", n)
	return nil
}

// TestMdmSignatureSizeBound: a valid signature whose base64 text is
// exactly MaxMdmSignatureSize long verifies; a longer one is refused
// without being decoded.
func TestMdmSignatureSizeBound(t *testing.T) {
	t.Parallel()
	body := []byte("body")
	if MaxMdmSignatureSize%4 != 0 {
		t.Fatalf("MaxMdmSignatureSize %d is not a whole number of base64 groups", MaxMdmSignatureSize)
	}
	s := newSigner(t, newRSAKey(t))
	der := signatureOfSize(t, s, body, MaxMdmSignatureSize/4*3)
	header := base64.StdEncoding.EncodeToString(der)
	if len(header) != MaxMdmSignatureSize {
		t.Fatalf("built a %d-character header, want %d", len(header), MaxMdmSignatureSize)
	}
	if _, err := VerifyMdmSignature(header, body); err != nil {
		t.Errorf("signature of exactly %d characters: %v", len(header), err)
	}
	for name, over := range map[string]string{
		"one byte more of DER": base64.RawStdEncoding.EncodeToString(signatureOfSize(t, s, body, len(der)+1)),
		"one leading space":    " " + header,
	} {
		if _, err := VerifyMdmSignature(over, body); !errors.Is(err, ErrSignatureTooLarge) {
			t.Errorf("%s (%d characters): have %v, want %v", name, len(over), err, ErrSignatureTooLarge)
		}
	}
}

// TestCertHeaderSizeBound: an escaped-PEM header exactly MaxCertHeaderSize
// long (text before the BEGIN line is ignored, so it pads) is parsed; one
// byte longer is refused.
func TestCertHeaderSizeBound(t *testing.T) {
	t.Parallel()
	cert := newCurrentIdentity(t, newECKey(t))
	enc := EncodeCertHeaderEscapedPEM(cert)
	at := strings.Repeat("x", MaxCertHeaderSize-len(enc)) + enc
	got, err := ParseCertHeader(at)
	if err != nil || !got.Equal(cert) {
		t.Errorf("header of exactly %d bytes: have %v, want the certificate", len(at), err)
	}
	if _, err := ParseCertHeader("x" + at); !errors.Is(err, ErrCertHeaderTooLarge) {
		t.Errorf("header of %d bytes: have %v, want %v", len(at)+1, err, ErrCertHeaderTooLarge)
	}
}
