package cryptoutil

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"strings"
)

// oidUserID is the LDAP UID attribute (0.9.2342.19200300.100.1.1) that
// carries the APNs topic in an MDM push certificate's subject.
var oidUserID = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}

// TopicPrefix starts every MDM push topic.
const TopicPrefix = "com.apple.mgmt"

// ErrNoTopic means a push certificate's subject has no UID attribute.
var ErrNoTopic = errors.New("certificate subject has no UID (topic)")

// TopicFromCert returns the APNs topic of an MDM push certificate: the UID
// attribute of its subject. It does not check the com.apple.mgmt prefix.
func TopicFromCert(cert *x509.Certificate) (string, error) {
	for _, atv := range cert.Subject.Names {
		if atv.Type.Equal(oidUserID) {
			if s, ok := atv.Value.(string); ok && s != "" {
				return s, nil
			}
			return "", fmt.Errorf("%w: UID is not a string", ErrNoTopic)
		}
	}
	return "", ErrNoTopic
}

// ValidTopic reports whether topic looks like an MDM push topic.
func ValidTopic(topic string) bool {
	return strings.HasPrefix(topic, TopicPrefix)
}

// PushKeyPair parses a push certificate and its private key (PEM) and
// returns them as a TLS certificate, its leaf parsed, with the topic.
func PushKeyPair(pemCert, pemKey []byte) (tls.Certificate, string, error) {
	pair, err := tls.X509KeyPair(pemCert, pemKey)
	if err != nil {
		return pair, "", fmt.Errorf("parsing push certificate and key: %w", err)
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return pair, "", fmt.Errorf("parsing push certificate: %w", err)
		}
	}
	topic, err := TopicFromCert(pair.Leaf)
	if err != nil {
		return pair, "", fmt.Errorf("reading push certificate topic: %w", err)
	}
	return pair, topic, nil
}
