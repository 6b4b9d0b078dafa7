package cryptoutil

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"strings"
	"testing"

	"github.com/nanomdm/nanomdm/internal/fixture"
)

// BenchmarkVerifyMdmSignature is the identity check of every device
// request: the real capture (a device's SHA-1 signature, RSA key, BER),
// the form devices send with an RSA-2048 (SCEP) or P-256 (ACME) key, and
// the simulator's default SHA-256 form with signed attributes:
//
//	go test -run '^$' -bench VerifyMdmSignature ./cryptoutil/
func BenchmarkVerifyMdmSignature(b *testing.B) {
	body := fixture.Read(b, idleReportBodyFile)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	sign := func(f func([]byte, *x509.Certificate, crypto.Signer) (string, error), key crypto.Signer) string {
		h, err := f(body, newCurrentIdentity(b, key), key)
		if err != nil {
			b.Fatalf("signing: %v", err)
		}
		return h
	}
	for _, tc := range []struct {
		name   string
		header string
	}{
		{"capture", strings.TrimSpace(string(fixture.Read(b, idleReportHeaderFile)))},
		{"sha1-rsa2048", sign(SignMdmSignatureSHA1, rsaKey)},
		{"sha1-p256", sign(SignMdmSignatureSHA1, ecKey)},
		{"sha256-attributes-p256", sign(SignMdmSignature, ecKey)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := VerifyMdmSignature(tc.header, body); err != nil {
					b.Fatalf("VerifyMdmSignature: %v", err)
				}
			}
		})
	}
}
