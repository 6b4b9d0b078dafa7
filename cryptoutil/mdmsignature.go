package cryptoutil

import (
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

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

// farFuture is later than any certificate's NotAfter.
var farFuture = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

// MdmSignature is a decoded Mdm-Signature header. Its signer certificate
// is known before the request body is read, so a server can check who
// sends a request before accepting its body; Verify then checks the
// signature over the body. An MdmSignature is not safe for concurrent use.
type MdmSignature struct {
	p7     *pkcs7.PKCS7
	signer *x509.Certificate
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
// certverify.
func (s *MdmSignature) Certificate() *x509.Certificate { return s.signer }

// Verify checks the signature over body. SHA-1 and SHA-256 digests, with
// or without signed attributes, are accepted. A signature that does not
// match body gives an error wrapping ErrInvalidSignature.
func (s *MdmSignature) Verify(body []byte) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("verifying mdm-signature: %w: %v", errParserPanic, r)
		}
	}()
	s.p7.Content = body
	defer func() { s.p7.Content = nil }()
	if err := verifyIgnoringValidity(s.p7); err != nil {
		var mismatch *pkcs7.MessageDigestMismatchError
		if errors.As(err, &mismatch) {
			// The library's own message spans several lines of hex.
			err = errDigestMismatch
		}
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
func VerifyMdmSignature(header string, body []byte) (*x509.Certificate, error) {
	s, err := ParseMdmSignature(header)
	if err != nil {
		return nil, err
	}
	if err := s.Verify(body); err != nil {
		return nil, err
	}
	return s.signer, nil
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
	return s.signer, nil
}

// parseDetached parses a BER-encoded CMS SignedData with one signer.
func parseDetached(der []byte) (s *MdmSignature, err error) {
	if err := checkBER(der); err != nil {
		return nil, fmt.Errorf("parsing mdm-signature: %w", err)
	}

	// checkBER is the real defence against hostile input. This only turns a
	// panic from a bug still lurking in the third-party parser into an error
	// rather than a crashed request.
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("parsing mdm-signature: %w: %v", errParserPanic, r)
		}
	}()

	p7, err := pkcs7.Parse(der)
	if err != nil {
		return nil, fmt.Errorf("parsing mdm-signature: %w", err)
	}
	if n := len(p7.Signers); n != 1 {
		return nil, fmt.Errorf("parsing mdm-signature: %d signers, want 1", n)
	}
	signer := p7.GetOnlySigner()
	if signer == nil {
		return nil, errors.New("parsing mdm-signature: no certificate for the signer")
	}
	return &MdmSignature{p7: p7, signer: signer}, nil
}

// verifyIgnoringValidity verifies the signatures in p7 without comparing a
// signing-time attribute to the signer certificate's validity period.
//
// The pkcs7 library rejects a message whose signing-time attribute lies
// outside the signer's NotBefore..NotAfter, and offers no way to turn that
// off. That check does not belong here. The signing time is the device's own
// claim, read from a clock that may be wrong (a freshly enrolled device that
// runs a little behind the CA would fail), and whether the certificate may be
// used at all is decided by certverify against the server's clock. Apple
// devices sign without signed attributes, so in practice the attribute is
// absent; this keeps signers that do add one from failing for the wrong
// reason. The signature is therefore checked against copies of the
// certificates whose validity period is unbounded. Only the validity fields
// differ, so signer lookup (issuer and serial) and the key are unchanged.
func verifyIgnoringValidity(p7 *pkcs7.PKCS7) error {
	original := p7.Certificates
	unbounded := make([]*x509.Certificate, len(original))
	for i, c := range original {
		cp := *c
		cp.NotBefore = time.Time{}
		cp.NotAfter = farFuture
		unbounded[i] = &cp
	}
	p7.Certificates = unbounded
	defer func() { p7.Certificates = original }()
	return p7.Verify()
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
