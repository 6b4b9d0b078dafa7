package simulator

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"time"

	"github.com/nanomdm/nanomdm/cryptoutil"
)

// CA issues device identity certificates, as an enrollment's SCEP server
// would. The server must trust its certificate (-ca).
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	return n
}

// NewCA creates a self-signed CA with an ECDSA P-256 key valid for ten years.
func NewCA(commonName string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating CA key: %w", err)
	}
	return NewCAWithKey(commonName, key)
}

// NewRSACA is NewCA with a fresh 2048-bit RSA key, as a SCEP CA needs:
// SCEP clients encrypt their requests to the CA's key.
func NewRSACA(commonName string) (*CA, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generating CA key: %w", err)
	}
	return NewCAWithKey(commonName, key)
}

// WriteFiles writes the CA certificate (mode 0644) and private key (mode
// 0600) as PEM files.
func (ca *CA) WriteFiles(certPath, keyPath string) error {
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		return err
	}
	if err := os.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		return fmt.Errorf("writing CA key: %w", err)
	}
	if err := os.WriteFile(certPath, ca.CertPEM(), 0o644); err != nil {
		return fmt.Errorf("writing CA certificate: %w", err)
	}
	return nil
}

// NewCAWithKey is NewCA for a key the caller chose: an RSA key for a
// SCEP CA, whose clients encrypt their requests to it.
func NewCAWithKey(commonName string, key crypto.Signer) (*CA, error) {
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"nanomdm simulator"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("creating CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key}, nil
}

// LoadCA reads a CA from PEM certificate and PEM private key bytes.
func LoadCA(certPEM, keyPEM []byte) (*CA, error) {
	certs, err := cryptoutil.ParseCertificatesPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("reading CA certificate: %w", err)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("reading CA key: %w", err)
	}
	return &CA{Cert: certs[0], Key: key}, nil
}

func parseKey(keyPEM []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
	}
	if k, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	return nil, errors.New("unsupported private key")
}

// CertPEM returns the CA certificate as PEM.
func (ca *CA) CertPEM() []byte { return cryptoutil.PEMCertificate(ca.Cert.Raw) }

// KeyPEM returns the CA private key as PEM.
func (ca *CA) KeyPEM() ([]byte, error) { return cryptoutil.PEMPrivateKey(ca.Key) }

// Identity is a device identity: a client certificate and its key.
type Identity struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// IdentityTemplate adjusts a certificate before the CA signs it, for tests
// that need expired certificates or other usages.
type IdentityTemplate func(*x509.Certificate)

// Issue creates a client-authentication identity for commonName, valid
// for one year from an hour ago.
func (ca *CA) Issue(commonName string, adjust ...IdentityTemplate) (*Identity, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating identity key: %w", err)
	}
	return ca.IssueForKey(commonName, key, adjust...)
}

// IssueForKey is Issue for a key the caller chose: an RSA key, as SCEP
// enrollments have, or one key shared by many simulated devices to spare
// generating one each (the server never compares keys).
func (ca *CA) IssueForKey(commonName string, key crypto.Signer, adjust ...IdentityTemplate) (*Identity, error) {
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	for _, f := range adjust {
		f(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, fmt.Errorf("issuing identity: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Identity{Cert: cert, Key: key}, nil
}

// PEM returns the identity's certificate and private key as PEM, in one
// blob that ParseIdentityPEM reads back.
func (id *Identity) PEM() ([]byte, error) {
	key, err := cryptoutil.PEMPrivateKey(id.Key)
	if err != nil {
		return nil, err
	}
	return append(cryptoutil.PEMCertificate(id.Cert.Raw), key...), nil
}

// ParseIdentityPEM reads an identity written by Identity.PEM.
func ParseIdentityPEM(b []byte) (*Identity, error) {
	certs, err := cryptoutil.ParseCertificatesPEM(b)
	if err != nil {
		return nil, err
	}
	var keyPEM []byte
	for rest := b; len(rest) > 0; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			keyPEM = pem.EncodeToMemory(block)
			break
		}
	}
	if keyPEM == nil {
		return nil, errors.New("no private key")
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, err
	}
	return &Identity{Cert: certs[0], Key: key}, nil
}
