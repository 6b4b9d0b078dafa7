package cryptoutil

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/nanomdm/nanomdm/internal/fixture"
)

func FuzzVerifyMdmSignature(f *testing.F) {
	body := fixture.Read(f, idleReportBodyFile)
	f.Add(string(fixture.Read(f, idleReportHeaderFile)), body)
	f.Add(string(fixture.Read(f, berCaptureHeaderFile)), body)

	key := newECKey(f)
	generated, err := SignMdmSignature(body, newCurrentIdentity(f, key), key)
	if err != nil {
		f.Fatalf("signing seed: %v", err)
	}
	f.Add(generated, body)
	generatedSHA1, err := SignMdmSignatureSHA1(body, newCurrentIdentity(f, key), key)
	if err != nil {
		f.Fatalf("signing seed: %v", err)
	}
	f.Add(generatedSHA1, body)
	f.Add(base64.StdEncoding.EncodeToString(nestBER(40, true)), body)
	f.Add("", body)

	f.Fuzz(func(t *testing.T, header string, body []byte) {
		cert, err := VerifyMdmSignature(header, body)
		if (err == nil) == (cert == nil) {
			t.Fatalf("have certificate %v and error %v, want exactly one", cert != nil, err)
		}
		if errors.Is(err, errParserPanic) {
			t.Fatalf("parser panicked: %v", err)
		}
		if err != nil {
			return
		}
		// Anything accepted must have been checked over this body: change
		// a byte and the signature must fail.
		other := append(bytes.Clone(body), 'x')
		if _, err := VerifyMdmSignature(header, other); !errors.Is(err, ErrInvalidSignature) {
			t.Fatalf("accepted over a different body too (err %v)", err)
		}
	})
}

// FuzzVerifyDetached skips the base64 layer so the fuzzer mutates the BER
// structure itself, which is what the bounds in checkBER protect.
func FuzzVerifyDetached(f *testing.F) {
	body := fixture.Read(f, idleReportBodyFile)
	for _, name := range []string{idleReportHeaderFile, berCaptureHeaderFile} {
		der, err := decodeBase64(strings.TrimSpace(string(fixture.Read(f, name))))
		if err != nil {
			f.Fatalf("decoding seed %s: %v", name, err)
		}
		f.Add(der, body)
	}
	f.Add(nestBER(maxBERDepth, true), body)

	f.Fuzz(func(t *testing.T, der []byte, body []byte) {
		cert, err := verifyDetached(der, body)
		if (err == nil) == (cert == nil) {
			t.Fatalf("have certificate %v and error %v, want exactly one", cert != nil, err)
		}
		if errors.Is(err, errParserPanic) {
			t.Fatalf("parser panicked: %v", err)
		}
	})
}

func FuzzParseCertHeader(f *testing.F) {
	key := newECKey(f)
	cert := newCurrentIdentity(f, key)
	f.Add(EncodeCertHeaderRFC9440(cert))
	f.Add(EncodeCertHeaderEscapedPEM(cert))
	f.Add(string(PEMCertificate(cert.Raw)))
	f.Add(strings.ReplaceAll(string(PEMCertificate(cert.Raw)), "\n", " "))
	f.Add(url.PathEscape(string(PEMCertificate(cert.Raw))))
	f.Add("::")
	f.Add("%")

	f.Fuzz(func(t *testing.T, value string) {
		cert, err := ParseCertHeader(value)
		if (err == nil) == (cert == nil) {
			t.Fatalf("have certificate %v and error %v, want exactly one", cert != nil, err)
		}
		if err != nil {
			return
		}
		// Whatever was accepted must survive both encoders unchanged.
		for _, encoded := range []string{EncodeCertHeaderRFC9440(cert), EncodeCertHeaderEscapedPEM(cert)} {
			again, err := ParseCertHeader(encoded)
			if err != nil {
				t.Fatalf("re-parsing %q: %v", encoded, err)
			}
			if !bytes.Equal(again.Raw, cert.Raw) {
				t.Fatalf("round trip changed the certificate")
			}
		}
	})
}

// FuzzVerifyAgainstPKCS7 compares the parser with pkcs7, which it
// replaced: whatever this package accepts, pkcs7 must accept too, with the
// same signer. The converse does not hold; the forms only pkcs7 accepts
// are listed at the top of cms.go. Set CRYPTOUTIL_FUZZ_STRICT=1 to have
// the fuzzer stop on those as well, to look for new ones.
//
// The seeds are valid signatures of every digest, key and form, over the
// right and a wrong body, plus messages that exercise the corners
// (unsorted attributes, embedded content, a second certificate).
func FuzzVerifyAgainstPKCS7(f *testing.F) {
	for _, tc := range validCMSCases(f) {
		f.Add(tc.der, tc.body)
	}
	body := []byte("<plist>body</plist>")
	s, other := newSigner(f, newECKey(f)), newSigner(f, newECKey(f))
	for _, m := range []cmsMessage{
		{signers: []cmsSigner{{signer: s, hash: crypto.SHA256, attrs: true, unsorted: true}}},
		{signers: []cmsSigner{{signer: s, hash: crypto.SHA256, attrs: true}}, content: []byte("embedded")},
		{signers: []cmsSigner{{signer: s, hash: crypto.SHA1}}, certs: []*x509.Certificate{other.cert, s.cert}},
	} {
		der := buildCMS(f, body, m)
		f.Add(der, body)
		f.Add(toIndefinite(f, der), body)
	}
	strict := os.Getenv("CRYPTOUTIL_FUZZ_STRICT") == "1"

	f.Fuzz(func(t *testing.T, der []byte, body []byte) {
		have, err := verifyDetached(der, body)
		if errors.Is(err, errParserPanic) {
			t.Fatalf("parser panicked: %v", err)
		}
		want, refErr := pkcs7Verify(der, body)
		switch {
		case err == nil && refErr != nil:
			t.Fatalf("accepted a message pkcs7 refuses: %v", refErr)
		case err == nil && !bytes.Equal(have.Raw, want.Raw):
			t.Fatalf("signer differs from pkcs7's")
		case strict && err != nil && refErr == nil:
			t.Fatalf("refused a message pkcs7 accepts: %v", err)
		}
	})
}
