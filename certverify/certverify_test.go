package certverify

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/cryptoutil"
)

// The test clock: a month into the default leaf validity period.
var (
	validFrom = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	testNow   = validFrom.Add(30 * 24 * time.Hour)
)

type authority struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func newECKey(t *testing.T) crypto.Signer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generating ecdsa key: %v", err)
	}
	return key
}

func newRSAKey(t *testing.T) crypto.Signer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("generating rsa key: %v", err)
	}
	return key
}

// sign creates a certificate from template for pub, issued by parent (or
// self-signed when parent is nil, in which case signer must be pub's key).
func sign(t *testing.T, template *x509.Certificate, pub crypto.PublicKey, parent *authority, signer crypto.Signer) *x509.Certificate {
	t.Helper()
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatalf("generating serial: %v", err)
	}
	template.SerialNumber = serial
	issuer := template
	if parent != nil {
		issuer, signer = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, template, issuer, pub, signer)
	if err != nil {
		t.Fatalf("creating certificate %q: %v", template.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parsing certificate %q: %v", template.Subject.CommonName, err)
	}
	return cert
}

// newCA returns a CA certificate named name, self-signed when parent is nil.
// extKeyUsage restricts what its descendants may be used for; nil leaves the
// extension out.
func newCA(t *testing.T, name string, key crypto.Signer, parent *authority, extKeyUsage []x509.ExtKeyUsage) *authority {
	t.Helper()
	template := &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             validFrom.AddDate(-1, 0, 0),
		NotAfter:              validFrom.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           extKeyUsage,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	return &authority{cert: sign(t, template, key.Public(), parent, key), key: key}
}

type leafOpts struct {
	notBefore, notAfter time.Time
	extKeyUsage         []x509.ExtKeyUsage
	key                 crypto.Signer
}

// newLeaf returns a device identity issued by ca, by default valid for a year
// from validFrom with the clientAuth extended key usage.
func newLeaf(t *testing.T, ca *authority, opts leafOpts) *x509.Certificate {
	t.Helper()
	if opts.notBefore.IsZero() {
		opts.notBefore = validFrom
	}
	if opts.notAfter.IsZero() {
		opts.notAfter = validFrom.AddDate(1, 0, 0)
	}
	if opts.extKeyUsage == nil {
		opts.extKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	if opts.key == nil {
		opts.key = newECKey(t)
	}
	template := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "device identity"},
		NotBefore:   opts.notBefore,
		NotAfter:    opts.notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: opts.extKeyUsage,
	}
	if len(template.ExtKeyUsage) == 0 {
		template.ExtKeyUsage = nil
	}
	return sign(t, template, opts.key.Public(), ca, opts.key)
}

func pemOf(certs ...*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		b.Write(cryptoutil.PEMCertificate(c.Raw))
	}
	return b.Bytes()
}

func TestPoolVerifierVerify(t *testing.T) {
	t.Parallel()
	root := newCA(t, "root", newECKey(t), nil, nil)
	rsaRoot := newCA(t, "rsa root", newRSAKey(t), nil, nil)
	intermediate := newCA(t, "intermediate", newECKey(t), root, nil)
	serverOnlyCA := newCA(t, "server-only intermediate", newECKey(t), root, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth})
	expiredCA := func() *authority {
		key := newECKey(t)
		template := &x509.Certificate{
			Subject:               pkix.Name{CommonName: "expired intermediate"},
			NotBefore:             validFrom.AddDate(-2, 0, 0),
			NotAfter:              validFrom.AddDate(-1, 0, 0),
			KeyUsage:              x509.KeyUsageCertSign,
			BasicConstraintsValid: true,
			IsCA:                  true,
		}
		return &authority{cert: sign(t, template, key.Public(), root, nil), key: key}
	}()
	stranger := newCA(t, "root", newECKey(t), nil, nil) // same name, other key
	leafKey := newECKey(t)

	tests := []struct {
		name          string
		cert          *x509.Certificate
		roots         []*x509.Certificate
		intermediates []*x509.Certificate
		now           time.Time
		wantErr       error
	}{
		{"issued by root", newLeaf(t, root, leafOpts{}), []*x509.Certificate{root.cert}, nil, testNow, nil},
		{"rsa identity from rsa root", newLeaf(t, rsaRoot, leafOpts{key: newRSAKey(t)}), []*x509.Certificate{rsaRoot.cert}, nil, testNow, nil},
		{"second of two roots", newLeaf(t, rsaRoot, leafOpts{}), []*x509.Certificate{root.cert, rsaRoot.cert}, nil, testNow, nil},
		{"via intermediate", newLeaf(t, intermediate, leafOpts{}), []*x509.Certificate{root.cert}, []*x509.Certificate{intermediate.cert}, testNow, nil},
		{"intermediate as root", newLeaf(t, intermediate, leafOpts{}), []*x509.Certificate{intermediate.cert}, nil, testNow, nil},
		{"first valid second", newLeaf(t, root, leafOpts{}), []*x509.Certificate{root.cert}, nil, validFrom, nil},
		{"last valid second", newLeaf(t, root, leafOpts{}), []*x509.Certificate{root.cert}, nil, validFrom.AddDate(1, 0, 0), nil},
		{"no extended key usage", newLeaf(t, root, leafOpts{extKeyUsage: []x509.ExtKeyUsage{}}), []*x509.Certificate{root.cert}, nil, testNow, nil},
		{"any extended key usage", newLeaf(t, root, leafOpts{extKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}), []*x509.Certificate{root.cert}, nil, testNow, nil},
		{"client and server auth", newLeaf(t, root, leafOpts{extKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}), []*x509.Certificate{root.cert}, nil, testNow, nil},

		{"nil certificate", nil, []*x509.Certificate{root.cert}, nil, testNow, ErrNoCertificate},
		{"intermediate not configured", newLeaf(t, intermediate, leafOpts{}), []*x509.Certificate{root.cert}, nil, testNow, ErrUntrusted},
		{"other root", newLeaf(t, rsaRoot, leafOpts{}), []*x509.Certificate{root.cert}, nil, testNow, ErrUntrusted},
		{"same-named root with other key", newLeaf(t, stranger, leafOpts{}), []*x509.Certificate{root.cert}, nil, testNow, ErrUntrusted},
		{"self-signed identity", newLeaf(t, nil, leafOpts{key: leafKey}), []*x509.Certificate{root.cert}, nil, testNow, ErrUntrusted},
		{"expired", newLeaf(t, root, leafOpts{}), []*x509.Certificate{root.cert}, nil, validFrom.AddDate(1, 0, 1), ErrExpired},
		{"not yet valid", newLeaf(t, root, leafOpts{}), []*x509.Certificate{root.cert}, nil, validFrom.Add(-time.Second), ErrExpired},
		{"expired intermediate", newLeaf(t, expiredCA, leafOpts{notBefore: validFrom.AddDate(-2, 0, 0)}), []*x509.Certificate{root.cert}, []*x509.Certificate{expiredCA.cert}, testNow, ErrExpired},
		{"server auth only", newLeaf(t, root, leafOpts{extKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}), []*x509.Certificate{root.cert}, nil, testNow, ErrUsage},
		{"email protection only", newLeaf(t, root, leafOpts{extKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}}), []*x509.Certificate{root.cert}, nil, testNow, ErrUsage},
		{"intermediate restricted to server auth", newLeaf(t, serverOnlyCA, leafOpts{}), []*x509.Certificate{root.cert}, []*x509.Certificate{serverOnlyCA.cert}, testNow, ErrUsage},
	}
	sentinels := []error{ErrNoCertificate, ErrUntrusted, ErrExpired, ErrUsage}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := tt.now
			v, err := NewPoolVerifier(pemOf(tt.roots...), pemOf(tt.intermediates...), WithClock(func() time.Time { return now }))
			if err != nil {
				t.Fatalf("NewPoolVerifier: %v", err)
			}
			err = v.Verify(tt.cert)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("have error %v, want none", err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("have error %v, want %v", err, tt.wantErr)
			}
			for _, s := range sentinels {
				if s != tt.wantErr && errors.Is(err, s) {
					t.Errorf("error %v also matches %v, want only %v", err, s, tt.wantErr)
				}
			}
		})
	}
}

func TestPoolVerifierDefaultClock(t *testing.T) {
	t.Parallel()
	root := newCA(t, "root", newECKey(t), nil, nil)
	now := time.Now()
	current := newLeaf(t, root, leafOpts{notBefore: now.Add(-time.Hour), notAfter: now.Add(time.Hour)})
	v, err := NewPoolVerifier(pemOf(root.cert), nil, WithClock(nil))
	if err != nil {
		t.Fatalf("NewPoolVerifier: %v", err)
	}
	if err := v.Verify(current); err != nil {
		t.Errorf("certificate valid now: have error %v, want none", err)
	}
	expired := newLeaf(t, root, leafOpts{notBefore: now.Add(-48 * time.Hour), notAfter: now.Add(-24 * time.Hour)})
	if err := v.Verify(expired); !errors.Is(err, ErrExpired) {
		t.Errorf("certificate that ended yesterday: have error %v, want ErrExpired", err)
	}
}

func TestNewPoolVerifier(t *testing.T) {
	t.Parallel()
	root := newCA(t, "root", newECKey(t), nil, nil)
	intermediate := newCA(t, "intermediate", newECKey(t), root, nil)
	keyPEM, err := cryptoutil.PEMPrivateKey(root.key)
	if err != nil {
		t.Fatalf("encoding key: %v", err)
	}

	tests := []struct {
		name          string
		roots         []byte
		intermediates []byte
		wantErr       error // nil: success; errAny: any error
	}{
		{"root only", pemOf(root.cert), nil, nil},
		{"blank intermediates", pemOf(root.cert), []byte("\n  \n"), nil},
		{"root with key alongside", append(keyPEM, pemOf(root.cert)...), pemOf(intermediate.cert), nil},
		{"no roots", nil, pemOf(intermediate.cert), cryptoutil.ErrNoCertificates},
		{"roots without certificates", keyPEM, nil, cryptoutil.ErrNoCertificates},
		{"intermediates without certificates", pemOf(root.cert), []byte("not pem"), cryptoutil.ErrNoCertificates},
		{"corrupt root", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), nil, errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := NewPoolVerifier(tt.roots, tt.intermediates)
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("have error %v, want none", err)
			case tt.wantErr == nil && v == nil:
				t.Fatalf("have nil verifier and no error")
			case tt.wantErr == nil:
			case err == nil:
				t.Fatalf("have nil error, want %v", tt.wantErr)
			case tt.wantErr != errAny && !errors.Is(err, tt.wantErr):
				t.Fatalf("have error %v, want %v", err, tt.wantErr)
			}
		})
	}
}

var errAny = errors.New("any error")
