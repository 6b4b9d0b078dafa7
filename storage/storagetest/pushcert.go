package storagetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/cryptoutil"
)

// oidUID is the LDAP UID attribute that carries an MDM push topic.
var oidUID = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}

// NewTopic returns a random MDM push topic.
func NewTopic() string {
	return "com.apple.mgmt.test." + RandomUUID()
}

// NewPushCert returns a self-signed push certificate for topic (its
// subject UID) and its unencrypted private key, both PEM encoded.
func NewPushCert(t testing.TB, topic string) (pemCert, pemKey []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generating push key: %v", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatalf("generating serial: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName: "APSP:" + topic,
			ExtraNames: []pkix.AttributeTypeAndValue{{Type: oidUID, Value: topic}},
		},
		NotBefore:   time.Now().Add(-time.Hour),
		NotAfter:    time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("creating push certificate: %v", err)
	}
	pemKey, err = cryptoutil.PEMPrivateKey(key)
	if err != nil {
		t.Fatalf("encoding push key: %v", err)
	}
	return cryptoutil.PEMCertificate(der), pemKey
}

// NewIdentityCert returns a self-signed device identity certificate, for
// requests that need one.
func NewIdentityCert(t testing.TB) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generating identity key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "Test Device Identity " + RandomUUID()},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("creating identity certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parsing identity certificate: %v", err)
	}
	return cert
}
