package cryptoutil

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"testing"

	"github.com/nanomdm/nanomdm/internal/fixture"
)

func TestCertHash(t *testing.T) {
	t.Parallel()
	cert, err := VerifyMdmSignature(string(fixture.Read(t, idleReportHeaderFile)), fixture.Read(t, idleReportBodyFile))
	if err != nil {
		t.Fatalf("verifying capture: %v", err)
	}
	if have, want := CertHash(cert), idleReportCertHash; have != want {
		t.Errorf("CertHash: have %s, want %s", have, want)
	}
}

func TestParseCertificatesPEM(t *testing.T) {
	t.Parallel()
	certA := newCurrentIdentity(t, newECKey(t))
	certB := newCurrentIdentity(t, newECKey(t))
	keyPEM, err := PEMPrivateKey(newECKey(t))
	if err != nil {
		t.Fatalf("encoding key: %v", err)
	}
	corrupt := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not der")})
	join := func(parts ...[]byte) []byte { return bytes.Join(parts, []byte("\n")) }

	tests := []struct {
		name    string
		data    []byte
		want    []*x509.Certificate
		wantErr error // nil: success expected, errAny: any error
	}{
		{"one", PEMCertificate(certA.Raw), []*x509.Certificate{certA}, nil},
		{"two in order", join(PEMCertificate(certA.Raw), PEMCertificate(certB.Raw)), []*x509.Certificate{certA, certB}, nil},
		{"key block skipped", join(keyPEM, PEMCertificate(certB.Raw), keyPEM), []*x509.Certificate{certB}, nil},
		{"text around blocks", join([]byte("subject=foo"), PEMCertificate(certA.Raw), []byte("trailer")), []*x509.Certificate{certA}, nil},
		{"empty", nil, nil, ErrNoCertificates},
		{"only a key", keyPEM, nil, ErrNoCertificates},
		{"not pem", []byte("hello"), nil, ErrNoCertificates},
		{"corrupt certificate", join(PEMCertificate(certA.Raw), corrupt), nil, errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			have, err := ParseCertificatesPEM(tt.data)
			checkErr(t, err, tt.wantErr)
			if len(have) != len(tt.want) {
				t.Fatalf("have %d certificates, want %d", len(have), len(tt.want))
			}
			for i := range have {
				if !have[i].Equal(tt.want[i]) {
					t.Errorf("certificate %d: have serial %v, want %v", i, have[i].SerialNumber, tt.want[i].SerialNumber)
				}
			}
		})
	}
}

func TestPEMPrivateKey(t *testing.T) {
	t.Parallel()
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("generating ed25519 key: %v", err)
	}
	tests := []struct {
		name string
		key  crypto.Signer
	}{
		{"rsa", newRSAKey(t)},
		{"ecdsa", newECKey(t)},
		{"ed25519", edKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := PEMPrivateKey(tt.key)
			if err != nil {
				t.Fatalf("PEMPrivateKey: %v", err)
			}
			block, rest := pem.Decode(data)
			if block == nil || len(bytes.TrimSpace(rest)) != 0 {
				t.Fatalf("have %q, want exactly one PEM block", data)
			}
			if have, want := block.Type, "PRIVATE KEY"; have != want {
				t.Errorf("block type: have %q, want %q", have, want)
			}
			parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				t.Fatalf("parsing PKCS #8: %v", err)
			}
			type equaler interface{ Equal(crypto.PrivateKey) bool }
			if !parsed.(equaler).Equal(tt.key) {
				t.Errorf("decoded key differs from the original")
			}
		})
	}

	t.Run("unsupported key type", func(t *testing.T) {
		if _, err := PEMPrivateKey("not a key"); err == nil {
			t.Errorf("have nil error, want one for a string key")
		}
	})
}

// errAny, as a wanted error, accepts any non-nil error.
var errAny = errors.New("any error")

// checkErr compares err with want: nil wants success, errAny any error, and
// anything else an error for which errors.Is(err, want) holds.
func checkErr(t *testing.T, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Fatalf("have error %v, want none", err)
	case want == nil:
	case err == nil:
		t.Fatalf("have nil error, want %v", want)
	case want != errAny && !errors.Is(err, want):
		t.Fatalf("have error %v, want one matching %v", err, want)
	}
}
