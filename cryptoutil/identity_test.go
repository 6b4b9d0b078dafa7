package cryptoutil

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"
)

// Real captures, copied from the shared test data.
const (
	idleReportHeaderFile = "idle-report.header.b64"
	idleReportBodyFile   = "idle-report.body.plist"
	berCaptureHeaderFile = "ber-indefinite-length.header.b64"

	// SHA-256 of the signer certificates in the captures, computed with
	// openssl from the certificates the messages carry.
	idleReportCertHash = "9704ca2f1ea3ea1eaaebd5013b0803d920e813ccf0d4b7d8808499a15f6a4716"
	berCaptureCertHash = "9acceeda1c02be03fa55803d778b55f154fcc40c217e6185d30e0857af9e75c0"
)

func newRSAKey(tb testing.TB) crypto.Signer {
	tb.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatalf("generating rsa key: %v", err)
	}
	return key
}

func newECKey(tb testing.TB) crypto.Signer {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("generating ecdsa key: %v", err)
	}
	return key
}

// newIdentity returns a self-signed client certificate for key, valid from
// notBefore to notAfter.
func newIdentity(tb testing.TB, key crypto.Signer, notBefore, notAfter time.Time) *x509.Certificate {
	tb.Helper()
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		tb.Fatalf("generating serial: %v", err)
	}
	template := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "test device identity"},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, key.Public(), key)
	if err != nil {
		tb.Fatalf("creating certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatalf("parsing certificate: %v", err)
	}
	return cert
}

// newCurrentIdentity returns a self-signed client certificate for key that is
// valid now.
func newCurrentIdentity(tb testing.TB, key crypto.Signer) *x509.Certificate {
	tb.Helper()
	now := time.Now()
	return newIdentity(tb, key, now.Add(-time.Hour), now.Add(24*time.Hour))
}
