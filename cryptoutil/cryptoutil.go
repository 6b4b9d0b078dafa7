// Package cryptoutil holds the small cryptographic helpers the server needs to
// identify a device: it reads and writes the Mdm-Signature header (a detached
// CMS signature over the request body), reads and writes client certificates
// passed along by a TLS-terminating proxy, and converts certificates and keys
// to and from PEM.
//
// Everything here parses untrusted input. Every parser bounds the size of its
// input and the nesting depth of the ASN.1 it accepts. Parsing does not check
// trust: whether a certificate chains to an operator's CA is decided by
// package certverify.
package cryptoutil

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
)

// ErrNoCertificates is returned by ParseCertificatesPEM when the input holds no
// CERTIFICATE block.
var ErrNoCertificates = errors.New("no certificates found")

// CertHash returns the lower-case hex SHA-256 digest of the certificate's DER
// encoding. The server uses it to associate identity certificates with
// enrollments.
func CertHash(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// ParseCertificatesPEM parses every CERTIFICATE block in data, in order.
// Blocks of other types (keys, parameters) are skipped. If data has no
// CERTIFICATE block the error is ErrNoCertificates.
func ParseCertificatesPEM(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, ErrNoCertificates
	}
	return certs, nil
}

// PEMCertificate wraps a DER certificate in a PEM CERTIFICATE block.
func PEMCertificate(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// PEMPrivateKey encodes key as an unencrypted PKCS #8 "PRIVATE KEY" block.
// PKCS #8 is used for every key type, RSA included, so one format covers RSA,
// ECDSA and Ed25519 keys and any reader only has to understand one block type.
func PEMPrivateKey(key crypto.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
