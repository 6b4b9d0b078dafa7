package cryptoutil

import (
	"bytes"
	"encoding/base64"
	"errors"
	"net/url"
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
