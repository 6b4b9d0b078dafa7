package cryptoutil

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/internal/fixture"
	"github.com/smallstep/pkcs7"
)

func TestVerifyMdmSignatureCapture(t *testing.T) {
	t.Parallel()
	header := string(fixture.Read(t, idleReportHeaderFile))
	body := fixture.Read(t, idleReportBodyFile)
	trimmed := strings.TrimSpace(header)

	tests := []struct {
		name   string
		header string
	}{
		{"as captured, trailing newline", header},
		{"trimmed", trimmed},
		{"without padding", strings.TrimRight(trimmed, "=")},
		{"surrounding whitespace", " \t" + trimmed + " \r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert, err := VerifyMdmSignature(tt.header, body)
			if err != nil {
				t.Fatalf("VerifyMdmSignature: %v", err)
			}
			if have, want := CertHash(cert), idleReportCertHash; have != want {
				t.Errorf("signer certificate hash: have %s, want %s", have, want)
			}
			if have, want := cert.SerialNumber.Int64(), int64(0x22); have != want {
				t.Errorf("signer serial: have %#x, want %#x", have, want)
			}
			if have, want := cert.Issuer.CommonName, "ca"; have != want {
				t.Errorf("signer issuer CN: have %q, want %q", have, want)
			}
		})
	}

	t.Run("other body", func(t *testing.T) {
		other := bytes.Replace(body, []byte("Idle"), []byte("Acknowledged"), 1)
		_, err := VerifyMdmSignature(header, other)
		if !errors.Is(err, ErrInvalidSignature) {
			t.Errorf("have error %v, want ErrInvalidSignature", err)
		}
	})
}

// The BER capture signs a body we do not have, so it must parse, name its
// signer, and then fail only the signature check.
func TestVerifyMdmSignatureBERCapture(t *testing.T) {
	t.Parallel()
	header := string(fixture.Read(t, berCaptureHeaderFile))
	der, err := decodeBase64(strings.TrimSpace(header))
	if err != nil {
		t.Fatalf("decoding capture: %v", err)
	}
	if !bytes.HasPrefix(der, []byte{0x30, 0x80}) {
		t.Fatalf("capture starts % x, want an indefinite-length SEQUENCE (30 80)", der[:2])
	}
	if err := checkBER(der); err != nil {
		t.Fatalf("checkBER: %v", err)
	}
	p7, err := pkcs7.Parse(der)
	if err != nil {
		t.Fatalf("parsing capture: %v", err)
	}
	signer := p7.GetOnlySigner()
	if signer == nil {
		t.Fatalf("capture has no single signer with a certificate")
	}
	if have, want := CertHash(signer), berCaptureCertHash; have != want {
		t.Errorf("signer certificate hash: have %s, want %s", have, want)
	}
	if have, want := signer.Issuer.CommonName, "MDM CA"; have != want {
		t.Errorf("signer issuer CN: have %q, want %q", have, want)
	}

	_, err = VerifyMdmSignature(header, fixture.Read(t, idleReportBodyFile))
	if !errors.Is(err, ErrInvalidSignature) {
		t.Errorf("over the idle report body: have error %v, want ErrInvalidSignature", err)
	}
}

func TestSignVerifyRoundTrip(t *testing.T) {
	t.Parallel()
	rsaKey, ecKey := newRSAKey(t), newECKey(t)
	body := fixture.Read(t, idleReportBodyFile)

	tests := []struct {
		name       string
		key        crypto.Signer
		sign       func([]byte, *x509.Certificate, crypto.Signer) (string, error)
		wantDigest asn1.ObjectIdentifier
		wantAttrs  bool
	}{
		{"rsa sha-256", rsaKey, SignMdmSignature, pkcs7.OIDDigestAlgorithmSHA256, true},
		{"ecdsa sha-256", ecKey, SignMdmSignature, pkcs7.OIDDigestAlgorithmSHA256, true},
		{"rsa sha-1", rsaKey, SignMdmSignatureSHA1, pkcs7.OIDDigestAlgorithmSHA1, false},
		{"ecdsa sha-1", ecKey, SignMdmSignatureSHA1, pkcs7.OIDDigestAlgorithmSHA1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert := newCurrentIdentity(t, tt.key)
			header, err := tt.sign(body, cert, tt.key)
			if err != nil {
				t.Fatalf("signing: %v", err)
			}

			have, err := VerifyMdmSignature(header, body)
			if err != nil {
				t.Fatalf("VerifyMdmSignature: %v", err)
			}
			if !have.Equal(cert) {
				t.Errorf("signer: have serial %v, want %v", have.SerialNumber, cert.SerialNumber)
			}

			_, err = VerifyMdmSignature(header, append(bytes.Clone(body), '\n'))
			if !errors.Is(err, ErrInvalidSignature) {
				t.Errorf("over other bytes: have error %v, want ErrInvalidSignature", err)
			}

			// The signature really uses the advertised digest and form.
			der, _ := base64.StdEncoding.DecodeString(header)
			p7, err := pkcs7.Parse(der)
			if err != nil {
				t.Fatalf("parsing own signature: %v", err)
			}
			if have := p7.Signers[0].DigestAlgorithm.Algorithm; !have.Equal(tt.wantDigest) {
				t.Errorf("digest algorithm: have %v, want %v", have, tt.wantDigest)
			}
			if have := len(p7.Signers[0].AuthenticatedAttributes) > 0; have != tt.wantAttrs {
				t.Errorf("signed attributes present: have %v, want %v", have, tt.wantAttrs)
			}
			if len(p7.Content) != 0 {
				t.Errorf("content: have %d bytes, want detached (none)", len(p7.Content))
			}
		})
	}
}

// A signing-time attribute outside the signer's validity period is the
// device's business; validity is checked by certverify at the server's time.
func TestVerifyMdmSignatureIgnoresSigningTime(t *testing.T) {
	t.Parallel()
	key := newECKey(t)
	now := time.Now()
	body := []byte("<plist/>")
	tests := []struct {
		name                string
		notBefore, notAfter time.Time
	}{
		{"expired certificate", now.Add(-48 * time.Hour), now.Add(-24 * time.Hour)},
		{"not yet valid certificate", now.Add(24 * time.Hour), now.Add(48 * time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert := newIdentity(t, key, tt.notBefore, tt.notAfter)
			header, err := SignMdmSignature(body, cert, key)
			if err != nil {
				t.Fatalf("signing: %v", err)
			}
			have, err := VerifyMdmSignature(header, body)
			if err != nil {
				t.Fatalf("VerifyMdmSignature: %v", err)
			}
			if !have.Equal(cert) {
				t.Errorf("signer: have serial %v, want %v", have.SerialNumber, cert.SerialNumber)
			}
			if !have.NotAfter.Equal(cert.NotAfter) || !have.NotBefore.Equal(cert.NotBefore) {
				t.Errorf("returned certificate validity: have %v..%v, want %v..%v",
					have.NotBefore, have.NotAfter, cert.NotBefore, cert.NotAfter)
			}
		})
	}
}

func TestVerifyMdmSignatureErrors(t *testing.T) {
	t.Parallel()
	body := fixture.Read(t, idleReportBodyFile)
	capture, err := decodeBase64(strings.TrimSpace(string(fixture.Read(t, idleReportHeaderFile))))
	if err != nil {
		t.Fatalf("decoding capture: %v", err)
	}
	b64 := base64.StdEncoding.EncodeToString

	keyA, keyB := newECKey(t), newECKey(t)
	certA, certB := newCurrentIdentity(t, keyA), newCurrentIdentity(t, keyB)
	wrongKey, err := SignMdmSignature(body, certB, keyA)
	if err != nil {
		t.Fatalf("signing with the wrong key: %v", err)
	}
	degenerate, err := pkcs7.DegenerateCertificate(certA.Raw)
	if err != nil {
		t.Fatalf("building certificate-only message: %v", err)
	}
	notSigned, err := asn1.Marshal(struct{ Type asn1.ObjectIdentifier }{pkcs7.OIDData})
	if err != nil {
		t.Fatalf("building data message: %v", err)
	}

	tests := []struct {
		name    string
		header  string
		wantErr error // errAny: any error except ErrInvalidSignature
	}{
		{"empty", "", ErrNoSignature},
		{"whitespace", " \t\r\n", ErrNoSignature},
		{"too large", strings.Repeat("A", MaxMdmSignatureSize+1), ErrSignatureTooLarge},
		{"too large whitespace", strings.Repeat(" ", MaxMdmSignatureSize+1), ErrSignatureTooLarge},
		{"not base64", "not*base64!", errAny},
		{"url-safe base64", strings.NewReplacer("+", "-", "/", "_").Replace(b64(capture)), errAny},
		{"truncated base64", b64(capture)[:1001], errAny},
		{"truncated message", b64(capture[:len(capture)/2]), errAny},
		{"missing final end-of-contents", b64(capture[:len(capture)-2]), errAny},
		{"trailing data", b64(append(bytes.Clone(capture), 0)), errAny},
		{"random bytes", b64([]byte("\x30\x03\x02\x01\x01 and then some text")), errAny},
		{"deep indefinite nesting", b64(nestBER(10000, true)), errBERTooDeep},
		{"deep definite nesting", b64(nestBER(200, false)), errBERTooDeep},
		{"wide indefinite element", b64(indefiniteNulls(20000)), errBERTooWide},
		{"no signers", b64(degenerate), errAny},
		{"not signed data", b64(notSigned), errAny},
		{"signed by another key", wrongKey, ErrInvalidSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert, err := VerifyMdmSignature(tt.header, body)
			checkErr(t, err, tt.wantErr)
			if tt.wantErr == errAny && errors.Is(err, ErrInvalidSignature) {
				t.Errorf("have ErrInvalidSignature for a malformed header: %v", err)
			}
			if cert != nil {
				t.Errorf("have certificate %v alongside an error, want nil", cert.SerialNumber)
			}
		})
	}
}

func TestVerifyMdmSignatureTwoSigners(t *testing.T) {
	t.Parallel()
	body := []byte("<plist/>")
	keyA, keyB := newECKey(t), newECKey(t)
	sd, err := pkcs7.NewSignedData(body)
	if err != nil {
		t.Fatalf("NewSignedData: %v", err)
	}
	for _, key := range []crypto.Signer{keyA, keyB} {
		if err := sd.AddSigner(newCurrentIdentity(t, key), key, pkcs7.SignerInfoConfig{}); err != nil {
			t.Fatalf("AddSigner: %v", err)
		}
	}
	sd.Detach()
	der, err := sd.Finish()
	if err != nil {
		t.Fatalf("Finish: %v", err)
	}
	if _, err := VerifyMdmSignature(base64.StdEncoding.EncodeToString(der), body); err == nil {
		t.Errorf("have nil error, want one for a message with two signers")
	}
}

func TestSignMdmSignatureMissingInputs(t *testing.T) {
	t.Parallel()
	key := newECKey(t)
	cert := newCurrentIdentity(t, key)
	if _, err := SignMdmSignature(nil, nil, key); err == nil {
		t.Errorf("nil certificate: have nil error, want one")
	}
	if _, err := SignMdmSignature(nil, cert, nil); err == nil {
		t.Errorf("nil key: have nil error, want one")
	}
}

// nestBER returns depth SEQUENCEs nested inside each other around a NULL,
// with indefinite or definite lengths.
func nestBER(depth int, indefinite bool) []byte {
	inner := []byte{0x05, 0x00}
	if indefinite {
		out := bytes.Repeat([]byte{0x30, 0x80}, depth)
		out = append(out, inner...)
		return append(out, make([]byte, 2*depth)...)
	}
	for range depth {
		inner = append(encodeDefiniteHeader(0x30, len(inner)), inner...)
	}
	return inner
}

// encodeDefiniteHeader returns the identifier and definite length octets of
// an element with the given tag and content length.
func encodeDefiniteHeader(tag byte, n int) []byte {
	if n < 0x80 {
		return []byte{tag, byte(n)}
	}
	var l []byte
	for ; n > 0; n >>= 8 {
		l = append([]byte{byte(n)}, l...)
	}
	return append([]byte{tag, 0x80 | byte(len(l))}, l...)
}
