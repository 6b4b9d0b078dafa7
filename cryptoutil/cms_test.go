package cryptoutil

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"math/big"
	"strings"
	"sync"
	"testing"

	"github.com/nanomdm/nanomdm/internal/fixture"
	"github.com/smallstep/pkcs7"
)

// cmsCase is a message, a body, and whether its signature holds over it.
type cmsCase struct {
	name  string
	der   []byte
	body  []byte
	valid bool
}

// validCMSCases returns signatures both parsers must accept, each with the
// same message over a different body, which both must refuse: the real
// captures, what pkcs7 signs (SHA-1 without attributes as devices send,
// SHA-2 with attributes as the simulator does) with RSA and P-256 keys,
// and the same in the BER form devices use.
func validCMSCases(tb testing.TB) []cmsCase {
	tb.Helper()
	body := fixture.Read(tb, idleReportBodyFile)
	other := append(bytes.Clone(body), '\n')
	var cases []cmsCase
	add := func(name string, der []byte) {
		cases = append(cases,
			cmsCase{name, der, body, true},
			cmsCase{name + ", other body", der, other, false})
	}
	capture, err := decodeBase64(strings.TrimSpace(string(fixture.Read(tb, idleReportHeaderFile))))
	if err != nil {
		tb.Fatalf("decoding capture: %v", err)
	}
	add("capture", capture)
	berCapture, err := decodeBase64(strings.TrimSpace(string(fixture.Read(tb, berCaptureHeaderFile))))
	if err != nil {
		tb.Fatalf("decoding capture: %v", err)
	}
	cases = append(cases, cmsCase{"ber capture, unknown body", berCapture, body, false})

	rsaSigner := newSigner(tb, newRSAKey(tb))
	ecSigner := newSigner(tb, newECKey(tb))
	for _, s := range []struct {
		name string
		signer
	}{{"rsa", rsaSigner}, {"p256", ecSigner}} {
		for _, d := range []struct {
			name string
			oid  asn1.ObjectIdentifier
		}{
			{"sha1", pkcs7.OIDDigestAlgorithmSHA1},
			{"sha256", pkcs7.OIDDigestAlgorithmSHA256},
			{"sha384", pkcs7.OIDDigestAlgorithmSHA384},
			{"sha512", pkcs7.OIDDigestAlgorithmSHA512},
		} {
			for _, attrs := range []bool{false, true} {
				name := s.name + " " + d.name
				if attrs {
					name += " attributes"
				}
				der := signWithPKCS7(tb, s.signer, body, d.oid, attrs)
				add(name, der)
				if d.name == "sha1" || attrs && d.name == "sha256" {
					add(name+" ber", toIndefinite(tb, der))
				}
			}
		}
	}
	return cases
}

// TestAgreesWithPKCS7 runs the valid messages, and the same over other
// bodies, through both parsers: they must agree, and name the same signer.
func TestAgreesWithPKCS7(t *testing.T) {
	t.Parallel()
	for _, tc := range validCMSCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			have, err := verifyDetached(tc.der, tc.body)
			want, refErr := pkcs7Verify(tc.der, tc.body)
			if (err == nil) != tc.valid || (refErr == nil) != tc.valid {
				t.Fatalf("have error %v, pkcs7 error %v, want valid %v", err, refErr, tc.valid)
			}
			if !tc.valid {
				if !errors.Is(err, ErrInvalidSignature) {
					t.Errorf("have error %v, want ErrInvalidSignature", err)
				}
				return
			}
			if !bytes.Equal(have.Raw, want.Raw) {
				t.Errorf("signer differs from pkcs7's")
			}
		})
	}
}

// TestVerifyBuiltMessages covers what pkcs7 cannot sign: every case is
// checked against pkcs7 too, and where the two differ the test says so.
func TestVerifyBuiltMessages(t *testing.T) {
	t.Parallel()
	body := []byte("<plist>body</plist>")
	rsaS, ecS := newSigner(t, newRSAKey(t)), newSigner(t, newECKey(t))
	otherS := newSigner(t, newECKey(t))

	const (
		accepted = iota
		invalid  // ErrInvalidSignature
		malformed
	)
	tests := []struct {
		name string
		msg  cmsMessage
		want int
		// pkcs7Accepts marks a documented difference: pkcs7 took the
		// message, this parser refuses it.
		pkcs7Accepts bool
		wantErr      error
	}{
		{"rsa sha-1", cmsMessage{signers: []cmsSigner{{signer: rsaS, hash: crypto.SHA1}}}, accepted, false, nil},
		{"rsa sha-384 attributes", cmsMessage{signers: []cmsSigner{{signer: rsaS, hash: crypto.SHA384, attrs: true}}}, accepted, false, nil},
		{"rsa sha-512 attributes", cmsMessage{signers: []cmsSigner{{signer: rsaS, hash: crypto.SHA512, attrs: true}}}, accepted, false, nil},
		{"p256 sha-384", cmsMessage{signers: []cmsSigner{{signer: ecS, hash: crypto.SHA384}}}, accepted, false, nil},
		{"p256 sha-512 attributes", cmsMessage{signers: []cmsSigner{{signer: ecS, hash: crypto.SHA512, attrs: true}}}, accepted, false, nil},
		{"rsa sha256WithRSAEncryption", cmsMessage{signers: []cmsSigner{{signer: rsaS, hash: crypto.SHA256, sigAlg: pkcs7.OIDEncryptionAlgorithmRSASHA256}}}, accepted, false, nil},
		{"p256 named-curve algorithm", cmsMessage{signers: []cmsSigner{{signer: ecS, hash: crypto.SHA256, sigAlg: pkcs7.OIDEncryptionAlgorithmECDSAP256}}}, accepted, false, nil},
		{"embedded content ignored", cmsMessage{signers: []cmsSigner{{signer: ecS, hash: crypto.SHA256, attrs: true}}, content: []byte("other")}, accepted, false, nil},
		{"signer certificate second", cmsMessage{signers: []cmsSigner{{signer: ecS, hash: crypto.SHA256}}, certs: []*x509.Certificate{otherS.cert, ecS.cert}}, accepted, false, nil},
		{"attributes unsorted, signed sorted", cmsMessage{signers: []cmsSigner{{signer: ecS, hash: crypto.SHA256, attrs: true, unsorted: true}}}, accepted, false, nil},

		{"attributes signed unsorted", cmsMessage{signers: []cmsSigner{{signer: ecS, hash: crypto.SHA256, attrs: true, unsorted: true, signUnsorted: true}}}, invalid, false, nil},
		{"wrong message digest", cmsMessage{signers: []cmsSigner{{signer: rsaS, hash: crypto.SHA256, attrs: true, messageDigest: make([]byte, 32)}}}, invalid, false, errDigestMismatch},
		{"content-type attribute differs", cmsMessage{signers: []cmsSigner{{signer: ecS, hash: crypto.SHA256, attrs: true, contentType: pkcs7.OIDSignedData}}}, invalid, true, nil},
		{"id-ecPublicKey algorithm", cmsMessage{signers: []cmsSigner{{signer: ecS, hash: crypto.SHA256, sigAlg: oidTestECPublicKey}}}, invalid, false, nil},
		{"rsa-pss algorithm", cmsMessage{signers: []cmsSigner{{signer: rsaS, hash: crypto.SHA256, sigAlg: oidTestRSAPSS}}}, invalid, false, nil},
		{"ecdsa algorithm for an rsa key", cmsMessage{signers: []cmsSigner{{signer: rsaS, hash: crypto.SHA256, sigAlg: pkcs7.OIDDigestAlgorithmECDSASHA256}}}, invalid, false, nil},
		{"rsa algorithm for an ecdsa key", cmsMessage{signers: []cmsSigner{{signer: ecS, hash: crypto.SHA256, sigAlg: pkcs7.OIDEncryptionAlgorithmRSA}}}, invalid, false, nil},
		{"md5 digest", cmsMessage{signers: []cmsSigner{{signer: rsaS, hash: crypto.SHA256, digest: oidTestMD5}}}, invalid, false, nil},
		{"signature algorithm as digest algorithm", cmsMessage{signers: []cmsSigner{{signer: rsaS, hash: crypto.SHA256, digest: pkcs7.OIDEncryptionAlgorithmRSASHA256}}}, invalid, true, nil},
		{"signed by another key", cmsMessage{signers: []cmsSigner{{signer: signer{ecS.key, otherS.cert}, hash: crypto.SHA256}}}, invalid, false, nil},

		{"signer certificate missing", cmsMessage{signers: []cmsSigner{{signer: ecS, hash: crypto.SHA256}}, certs: []*x509.Certificate{otherS.cert}}, malformed, false, nil},
		{"no certificates", cmsMessage{signers: []cmsSigner{{signer: ecS, hash: crypto.SHA256}}, certs: []*x509.Certificate{}}, malformed, false, nil},
		{"two signers", cmsMessage{signers: []cmsSigner{{signer: ecS, hash: crypto.SHA256}, {signer: rsaS, hash: crypto.SHA256}}, certs: []*x509.Certificate{ecS.cert, rsaS.cert}}, malformed, false, nil},
		{"no signers", cmsMessage{certs: []*x509.Certificate{ecS.cert}}, malformed, false, nil},
		{"subject key identifier", cmsMessage{signers: []cmsSigner{{signer: ecS, hash: crypto.SHA256, ski: true}}}, malformed, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			der := buildCMS(t, body, tt.msg)
			have, err := verifyDetached(der, body)
			ref, refErr := pkcs7Verify(der, body)
			switch tt.want {
			case accepted:
				if err != nil {
					t.Fatalf("have error %v, want none", err)
				}
				if !have.Equal(tt.msg.signers[0].cert) {
					t.Errorf("have signer %v, want %v", have.SerialNumber, tt.msg.signers[0].cert.SerialNumber)
				}
			case invalid:
				if !errors.Is(err, ErrInvalidSignature) {
					t.Errorf("have error %v, want ErrInvalidSignature", err)
				}
			case malformed:
				if err == nil || errors.Is(err, ErrInvalidSignature) {
					t.Errorf("have error %v, want a parse error", err)
				}
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("have error %v, want %v", err, tt.wantErr)
			}
			if refAccepts := refErr == nil; refAccepts != (tt.want == accepted || tt.pkcs7Accepts) {
				t.Errorf("pkcs7: have error %v, want accepted %v", refErr, !refAccepts)
			} else if refAccepts && have != nil && !bytes.Equal(ref.Raw, have.Raw) {
				t.Errorf("signer differs from pkcs7's")
			}
		})
	}
}

// TestParseErrorsNamePart checks a few parse errors read as they should:
// with the context the server logs, and without ErrInvalidSignature.
func TestParseErrorsNamePart(t *testing.T) {
	t.Parallel()
	body := []byte("body")
	s := newSigner(t, newECKey(t))
	other := newSigner(t, newECKey(t))
	tests := []struct {
		name string
		der  []byte
		want string
	}{
		{"missing certificate", buildCMS(t, body, cmsMessage{signers: []cmsSigner{{signer: s, hash: crypto.SHA256}}, certs: []*x509.Certificate{other.cert}}), "no certificate for the signer"},
		{"two signers", buildCMS(t, body, cmsMessage{signers: []cmsSigner{{signer: s, hash: crypto.SHA256}, {signer: other, hash: crypto.SHA256}}}), "2 signers, want 1"},
		{"not signed data", tlv(berSequence, mustMarshal(pkcs7.OIDData)), "content type 1.2.840.113549.1.7.1, want signed-data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseMdmSignature(base64.StdEncoding.EncodeToString(tt.der))
			if err == nil || !strings.HasPrefix(err.Error(), "parsing mdm-signature: ") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("have error %v, want one containing %q", err, tt.want)
			}
			if errors.Is(err, ErrInvalidSignature) {
				t.Errorf("have ErrInvalidSignature for a malformed message")
			}
		})
	}
}

// TestCheckCMSEncoding: the CMS walk refuses the two BER forms pkcs7
// misreads, which plain checkBER accepts.
func TestCheckCMSEncoding(t *testing.T) {
	t.Parallel()
	for _, data := range [][]byte{
		{0x30, 0x80, 0x00, 0x00},                         // empty indefinite
		{0x30, 0x80, 0x30, 0x80, 0x00, 0x00, 0x00, 0x00}, // empty inside
		{0x04, 0x82, 0x00, 0x01, 0x00},                   // leading zero length octet
	} {
		if err := checkBER(data); err != nil {
			t.Errorf("checkBER(% x): %v, want nil", data, err)
		}
		if err := checkCMSEncoding(data); err == nil {
			t.Errorf("checkCMSEncoding(% x): nil error, want one", data)
		}
	}
	for _, data := range [][]byte{
		{0x30, 0x02, 0x00, 0x00},             // end-of-contents in definite content
		{0x00, 0x00},                         // end-of-contents alone
		{0x1f, 0x80, 0x01, 0x00},             // high tag with a leading zero digit
		{0x1f, 0x1e, 0x00},                   // high tag form for a low number
		{0x30, 0x80, 0x20, 0x00, 0x00, 0x00}, // constructed tag 0
	} {
		if err := checkBER(data); err == nil {
			t.Errorf("checkBER(% x): nil error, want one", data)
		}
	}
}

// TestBERReader reads nested indefinite and definite elements.
func TestBERReader(t *testing.T) {
	t.Parallel()
	// SEQUENCE (indefinite) { INTEGER 7, [0] (indefinite) { NULL }, OCTET STRING "ab" }
	data := []byte{0x30, 0x80, 0x02, 0x01, 0x07, 0xa0, 0x80, 0x05, 0x00, 0x00, 0x00, 0x04, 0x02, 'a', 'b', 0x00, 0x00}
	if err := checkCMSEncoding(data); err != nil {
		t.Fatalf("checkCMSEncoding: %v", err)
	}
	r := berReader{rest: data}
	seq, err := r.expect(berSequence, "sequence")
	if err != nil || !r.empty() || !seq.indefinite || len(seq.full) != len(data) {
		t.Fatalf("sequence: %+v, %v", seq, err)
	}
	c := seq.children()
	if i, err := c.expect(berInteger, "integer"); err != nil || !bytes.Equal(i.content, []byte{7}) {
		t.Errorf("integer: %+v, %v", i, err)
	}
	if e, err := c.expect(berContext0, "[0]"); err != nil || !bytes.Equal(e.content, []byte{0x05, 0x00}) {
		t.Errorf("[0]: %+v, %v", e, err)
	}
	if _, err := c.expect(berInteger, "octet string"); err == nil {
		t.Errorf("octet string read as integer")
	}
	if _, err := c.expect(berInteger, "more"); err == nil || !c.empty() {
		t.Errorf("read past the end: %v", err)
	}
}

// TestValidOIDAndInteger compares the two validators with encoding/asn1,
// which pkcs7 decoded with.
func TestValidOIDAndInteger(t *testing.T) {
	t.Parallel()
	for _, b := range [][]byte{
		{}, {0x2a}, {0x80, 0x01}, {0x2a, 0x80, 0x01}, {0x2a, 0x86}, {0x88, 0x37},
		{0x87, 0xff, 0xff, 0xff, 0x7f}, {0x88, 0x80, 0x80, 0x80, 0x00}, {0x81, 0x81, 0x81, 0x81, 0x81, 0x01},
		oidSHA256, oidSignedData, oidCurveP384,
	} {
		var oid asn1.ObjectIdentifier
		_, err := asn1.Unmarshal(append([]byte{0x06, byte(len(b))}, b...), &oid)
		if have, want := validOID(b), err == nil; have != want {
			t.Errorf("validOID(% x) = %v, encoding/asn1 says %v (%v)", b, have, want, err)
		}
	}
	for _, b := range [][]byte{
		{}, {0x00}, {0x00, 0x7f}, {0x00, 0x80}, {0xff}, {0xff, 0x80}, {0xff, 0x7f}, {0x01, 0x00},
	} {
		var n *big.Int
		_, err := asn1.Unmarshal(append([]byte{0x02, byte(len(b))}, b...), &n)
		if have, want := validInteger(b), err == nil; have != want {
			t.Errorf("validInteger(% x) = %v, encoding/asn1 says %v (%v)", b, have, want, err)
		}
	}
}

func TestCertCache(t *testing.T) {
	t.Parallel()
	certs := make([]*x509.Certificate, 8)
	key := newECKey(t)
	for i := range certs {
		certs[i] = newCurrentIdentity(t, key)
	}

	t.Run("same bytes, same certificate", func(t *testing.T) {
		c := newCertCache(4, 1<<20)
		der := bytes.Clone(certs[0].Raw)
		a, err := c.parse(der)
		if err != nil {
			t.Fatalf("parse: %v", err)
		}
		der[len(der)-1] ^= 0xff // the cache must hold its own copy
		b, err := c.parse(certs[0].Raw)
		if err != nil {
			t.Fatalf("parse: %v", err)
		}
		if a != b || a.cert != b.cert {
			t.Errorf("parsed the same certificate twice")
		}
		if !a.cert.Equal(certs[0]) {
			t.Errorf("cached certificate differs from the original")
		}
		if have, want := new(big.Int).SetBytes(a.serial), certs[0].SerialNumber; have.Cmp(want) != 0 {
			t.Errorf("serial: have %v, want %v", have, want)
		}
	})

	t.Run("bounded", func(t *testing.T) {
		c := newCertCache(3, 1<<20)
		for _, cert := range certs {
			if _, err := c.parse(cert.Raw); err != nil {
				t.Fatalf("parse: %v", err)
			}
			if n := c.len(); n > 3 {
				t.Fatalf("cache holds %d certificates, limit 3", n)
			}
		}
		if n := c.len(); n != 3 {
			t.Errorf("cache holds %d certificates, want 3", n)
		}
		last, _ := c.parse(certs[len(certs)-1].Raw)
		again, _ := c.parse(certs[len(certs)-1].Raw)
		if last != again {
			t.Errorf("the newest certificate was not kept")
		}
	})

	t.Run("bounded in bytes", func(t *testing.T) {
		c := newCertCache(100, 2*len(certs[0].Raw)+len(certs[0].Raw)/2)
		for _, cert := range certs {
			if _, err := c.parse(cert.Raw); err != nil {
				t.Fatalf("parse: %v", err)
			}
			if n := c.len(); n > 2 {
				t.Fatalf("cache holds %d certificates, room for 2", n)
			}
		}
	})

	t.Run("errors and large certificates are not kept", func(t *testing.T) {
		c := newCertCache(3, 1<<20)
		if _, err := c.parse([]byte{0x30, 0x00}); err == nil {
			t.Errorf("parsed an empty sequence as a certificate")
		}
		large := make([]byte, maxCachedCertSize+1)
		large[0] = 0x30
		if _, err := c.parse(large); err == nil {
			t.Errorf("parsed zeros as a certificate")
		}
		if n := c.len(); n != 0 {
			t.Errorf("cache holds %d entries, want 0", n)
		}
	})

	t.Run("concurrent", func(t *testing.T) {
		c := newCertCache(3, 1<<20)
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() {
				for i := range 50 {
					cert := certs[(g+i)%len(certs)]
					have, err := c.parse(cert.Raw)
					if err != nil || !have.cert.Equal(cert) {
						t.Errorf("parse: %v", err)
						return
					}
				}
			})
		}
		wg.Wait()
	})
}

// TestVerifyCachesSigner: two requests signed with the same certificate
// get the same parsed certificate.
func TestVerifyCachesSigner(t *testing.T) {
	t.Parallel()
	s := newSigner(t, newECKey(t))
	a, err := SignMdmSignatureSHA1([]byte("a"), s.cert, s.key)
	if err != nil {
		t.Fatalf("signing: %v", err)
	}
	b, err := SignMdmSignatureSHA1([]byte("b"), s.cert, s.key)
	if err != nil {
		t.Fatalf("signing: %v", err)
	}
	certA, errA := VerifyMdmSignature(a, []byte("a"))
	certB, errB := VerifyMdmSignature(b, []byte("b"))
	if errA != nil || errB != nil {
		t.Fatalf("VerifyMdmSignature: %v, %v", errA, errB)
	}
	if certA != certB {
		t.Errorf("the same certificate was parsed twice")
	}
}

// TestHostileHeaders: headers built to cost the parser time are refused,
// each by the bound meant for it.
func TestHostileHeaders(t *testing.T) {
	t.Parallel()
	body := []byte("body")
	s := newSigner(t, newECKey(t))
	valid := toIndefinite(t, buildCMS(t, body, cmsMessage{signers: []cmsSigner{{signer: s, hash: crypto.SHA256}}}))
	if _, err := verifyDetached(valid, body); err != nil {
		t.Fatalf("the message the hostile ones are built on: %v", err)
	}
	// The largest DER a header may carry.
	const maxDER = MaxMdmSignatureSize / 4 * 3

	// tinyInSignedData puts n NULLs inside the indefinite-length
	// SignedData, right after its version.
	tinyInSignedData := func(n int) []byte {
		i := bytes.Index(valid, []byte{0x30, 0x80, 0x02, 0x01, 0x01}) + 5
		out := bytes.Clone(valid[:i])
		out = append(out, bytes.Repeat([]byte{0x05, 0x00}, n)...)
		return append(out, valid[i:]...)
	}
	// definiteTiny is n NULLs in a definite-length SEQUENCE.
	definiteTiny := definiteNulls((maxDER - 8) / 2)

	tests := []struct {
		name    string
		der     []byte
		wantErr error // errAny: any error but ErrInvalidSignature
	}{
		{"deep indefinite nesting", nestBER((maxDER-2)/4, true), errBERTooDeep},
		{"deep definite nesting", nestBER(1000, false), errBERTooDeep},
		{"many indefinite items", indefiniteNulls(maxDER/2 - 4), errBERTooWide},
		{"many tiny elements in the signed data", tinyInSignedData(maxDER/2 - len(valid)), errBERTooWide},
		{"64 KiB of tiny definite elements", definiteTiny, errAny},
		{"tiny elements as certificates", bytes.Replace(valid, s.cert.Raw, definiteNulls(2000), 1), errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			header := base64.StdEncoding.EncodeToString(tt.der)
			if len(header) > MaxMdmSignatureSize {
				t.Fatalf("built a %d-byte header, over the limit", len(header))
			}
			_, err := VerifyMdmSignature(header, body)
			checkErr(t, err, tt.wantErr)
			if errors.Is(err, ErrInvalidSignature) {
				t.Errorf("have ErrInvalidSignature for a malformed header: %v", err)
			}
		})
	}
}
