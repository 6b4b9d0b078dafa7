package api

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/cryptoutil"
)

// fuzzSeed returns a valid upload (certificate and PKCS #8 key) for topic.
func fuzzSeed(f *testing.F, topic string) (certPEM, keyPEM []byte) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatalf("generating key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject: pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{
			{Type: asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}, Value: topic},
		}},
		NotBefore: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:  time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		f.Fatalf("creating certificate: %v", err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// FuzzParsePushCert feeds arbitrary uploads to the push certificate
// parser: it must never panic, refuse with ErrInvalidPushCert, and accept
// only a key-matching pair with an MDM topic.
func FuzzParsePushCert(f *testing.F) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	cert, key := fuzzSeed(f, "com.apple.mgmt.External.fuzz")
	other, _ := fuzzSeed(f, "com.example.fuzz")
	f.Add(append(append([]byte{}, cert...), key...))
	f.Add(append(bytes.TrimSpace(cert), bytes.TrimSpace(key)...))
	f.Add(append(append([]byte{}, key...), cert...))
	f.Add(append(append([]byte{}, other...), key...))
	f.Add(cert)
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\nAAAA\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte("-----BEGIN CERTIFICATE----------BEGIN CERTIFICATE-----"))
	f.Add([]byte("garbage"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		pc, err := parsePushCert(body, now)
		if err != nil {
			if !errors.Is(err, ErrInvalidPushCert) {
				t.Fatalf("error %v does not wrap ErrInvalidPushCert", err)
			}
			return
		}
		if !strings.HasPrefix(pc.topic, cryptoutil.TopicPrefix) {
			t.Fatalf("accepted topic %q", pc.topic)
		}
		pair, err := tls.X509KeyPair(pc.certPEM, pc.keyPEM)
		if err != nil {
			t.Fatalf("accepted an upload whose certificate and key do not pair: %v", err)
		}
		if !pc.notAfter.After(now) {
			t.Fatalf("accepted a certificate expired at %v", pc.notAfter)
		}
		if topic, err := cryptoutil.TopicFromCert(pair.Leaf); err != nil || topic != pc.topic {
			t.Fatalf("stored certificate topic %q, %v; parsed %q", topic, err, pc.topic)
		}
	})
}
