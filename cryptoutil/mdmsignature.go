package cryptoutil

import (
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/smallstep/pkcs7"
)

// MaxMdmSignatureSize is the largest Mdm-Signature header value, in bytes of
// base64 text, that VerifyMdmSignature will decode. A real one, holding one
// RSA-2048 certificate and signature, is under 2 KiB.
const MaxMdmSignatureSize = 64 << 10

var (
	// ErrNoSignature is returned by VerifyMdmSignature when the header is
	// empty: the request carries no signature to check.
	ErrNoSignature = errors.New("no mdm-signature")

	// ErrSignatureTooLarge is returned by VerifyMdmSignature when the header
	// is longer than MaxMdmSignatureSize.
	ErrSignatureTooLarge = errors.New("mdm-signature too large")

	// ErrInvalidSignature is returned by VerifyMdmSignature when the header
	// decodes to a well-formed signature that does not verify over the body.
	// The error also wraps the underlying cause.
	ErrInvalidSignature = errors.New("invalid signature")
)

var (
	errDigestMismatch = errors.New("body digest does not match the signed digest")
	errParserPanic    = errors.New("unexpected panic in the cms parser")
)

// MdmSignature is a decoded Mdm-Signature header. Its signer certificate
// is known before the request body is read, so a server can check who
// sends a request before accepting its body; Verify then checks the
// signature over the body. An MdmSignature may be verified from several
// goroutines at once.
type MdmSignature struct {
	sd signedData
}

// ParseMdmSignature decodes the value of an Mdm-Signature HTTP header.
//
// The header is the standard base64 encoding of a CMS SignedData message with
// detached content; surrounding whitespace and missing "=" padding are
// tolerated. The message may use BER (Apple devices send indefinite lengths)
// and must have exactly one signer, whose certificate it carries.
//
// An empty header gives ErrNoSignature, an oversized one
// ErrSignatureTooLarge. Any other error means the header could not be
// decoded.
func ParseMdmSignature(header string) (*MdmSignature, error) {
	if len(header) > MaxMdmSignatureSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrSignatureTooLarge, len(header), MaxMdmSignatureSize)
	}
	header = strings.TrimSpace(header)
	if header == "" {
		return nil, ErrNoSignature
	}
	der, err := decodeBase64(header)
	if err != nil {
		return nil, fmt.Errorf("decoding mdm-signature: %w", err)
	}
	return parseDetached(der)
}

// Certificate returns the signer's certificate. It is not checked for
// trust, validity period or key usage; that is the job of package
// certverify. The certificate may be shared with other requests signed
// with it, so it must not be modified.
func (s *MdmSignature) Certificate() *x509.Certificate { return s.sd.signer }

// Verify checks the signature over body. SHA-1, SHA-256, SHA-384 and
// SHA-512 digests, with or without signed attributes, and RSA (PKCS #1
// v1.5) and ECDSA keys are accepted. A signing-time attribute is not
// compared with anything: the signer certificate's validity is checked by
// certverify at the server's time, not at the time the device claims. A
// signature that does not match body gives an error wrapping
// ErrInvalidSignature.
func (s *MdmSignature) Verify(body []byte) (err error) {
	// Defence in depth: the code below is meant never to panic, but a
	// bug that made it would otherwise take the request down.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("verifying mdm-signature: %w: %v", errParserPanic, r)
		}
	}()
	if err := s.sd.verify(body); err != nil {
		return fmt.Errorf("verifying mdm-signature: %w: %w", ErrInvalidSignature, err)
	}
	return nil
}

// VerifyMdmSignature checks the value of an Mdm-Signature HTTP header against
// the request body and returns the certificate that signed it: it is
// ParseMdmSignature followed by Verify, with their errors.
//
// Only the signature is checked. The returned certificate is not checked for
// trust, validity period or key usage; that is the job of package certverify.
// It may be shared with other requests, so it must not be modified.
func VerifyMdmSignature(header string, body []byte) (*x509.Certificate, error) {
	s, err := ParseMdmSignature(header)
	if err != nil {
		return nil, err
	}
	if err := s.Verify(body); err != nil {
		return nil, err
	}
	return s.sd.signer, nil
}

// verifyDetached parses a BER-encoded CMS SignedData and verifies its only
// signer over body.
func verifyDetached(der []byte, body []byte) (*x509.Certificate, error) {
	s, err := parseDetached(der)
	if err != nil {
		return nil, err
	}
	if err := s.Verify(body); err != nil {
		return nil, err
	}
	return s.sd.signer, nil
}

// parseDetached parses a BER-encoded CMS SignedData with one signer.
func parseDetached(der []byte) (s *MdmSignature, err error) {
	// Defence in depth, as in Verify.
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("parsing mdm-signature: %w: %v", errParserPanic, r)
		}
	}()
	s = new(MdmSignature)
	if err := parseSignedData(der, &s.sd); err != nil {
		return nil, fmt.Errorf("parsing mdm-signature: %w", err)
	}
	return s, nil
}

// SignMdmSignature signs body the way a device does for the Mdm-Signature
// header: a detached CMS SignedData with a SHA-256 digest and the usual signed
// attributes (content type, message digest, signing time), carrying cert, in
// standard base64. It is meant for device simulators and tests.
func SignMdmSignature(body []byte, cert *x509.Certificate, key crypto.Signer) (string, error) {
	return signDetached(body, cert, key, pkcs7.OIDDigestAlgorithmSHA256, true)
}

// SignMdmSignatureSHA1 is like SignMdmSignature but produces the form seen
// from real Apple devices: a SHA-1 digest and no signed attributes, so the
// signature is made directly over the body.
func SignMdmSignatureSHA1(body []byte, cert *x509.Certificate, key crypto.Signer) (string, error) {
	return signDetached(body, cert, key, pkcs7.OIDDigestAlgorithmSHA1, false)
}

func signDetached(body []byte, cert *x509.Certificate, key crypto.Signer, digest asn1.ObjectIdentifier, attributes bool) (string, error) {
	if cert == nil || key == nil {
		return "", errors.New("signing mdm-signature: certificate and key are required")
	}
	sd, err := pkcs7.NewSignedData(body)
	if err != nil {
		return "", fmt.Errorf("signing mdm-signature: %w", err)
	}
	sd.SetDigestAlgorithm(digest)
	if attributes {
		err = sd.AddSigner(cert, key, pkcs7.SignerInfoConfig{})
	} else {
		err = sd.SignWithoutAttr(cert, key, pkcs7.SignerInfoConfig{})
	}
	if err != nil {
		return "", fmt.Errorf("signing mdm-signature: %w", err)
	}
	sd.Detach()
	der, err := sd.Finish()
	if err != nil {
		return "", fmt.Errorf("signing mdm-signature: %w", err)
	}
	return base64.StdEncoding.EncodeToString(der), nil
}

// decodeBase64 decodes standard base64 with or without "=" padding.
func decodeBase64(s string) ([]byte, error) {
	for range 2 {
		s = strings.TrimSuffix(s, "=")
	}
	return base64.RawStdEncoding.DecodeString(s)
}
