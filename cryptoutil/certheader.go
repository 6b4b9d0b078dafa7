package cryptoutil

import (
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// MaxCertHeaderSize is the largest client-certificate header value, in bytes,
// that ParseCertHeader will decode.
const MaxCertHeaderSize = 32 << 10

var (
	// ErrNoCertificate is returned by ParseCertHeader when the header value
	// is empty: the proxy passed no client certificate.
	ErrNoCertificate = errors.New("no certificate")

	// ErrCertHeaderTooLarge is returned by ParseCertHeader when the value is
	// longer than MaxCertHeaderSize.
	ErrCertHeaderTooLarge = errors.New("certificate header too large")
)

const (
	pemCertBegin = "-----BEGIN CERTIFICATE-----"
	pemCertEnd   = "-----END CERTIFICATE-----"
)

// ParseCertHeader parses the client certificate a TLS-terminating proxy put in
// a request header. Two encodings are understood:
//
//   - RFC 9440 (Client-Cert), chosen when the value starts with ":": the
//     certificate's DER in standard base64 between two colons. Missing "="
//     padding is tolerated, as RFC 8941 asks of parsers.
//   - URL-escaped PEM otherwise, as nginx's $ssl_client_escaped_cert or AWS
//     ALB's X-Amzn-Mtls-Clientcert produce. Percent escapes are decoded but
//     "+" is kept as is: ALB leaves "+" unescaped, and it is a base64
//     character, so it cannot mean a space. An unescaped PEM is accepted too,
//     including one whose line breaks a proxy turned into spaces.
//
// If the value holds more than one PEM certificate only the first is used.
// Surrounding whitespace is ignored. An empty value gives ErrNoCertificate,
// an oversized one ErrCertHeaderTooLarge.
func ParseCertHeader(value string) (*x509.Certificate, error) {
	if len(value) > MaxCertHeaderSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrCertHeaderTooLarge, len(value), MaxCertHeaderSize)
	}
	value = strings.TrimSpace(value)
	if value == "" {
		return nil, ErrNoCertificate
	}
	var (
		der []byte
		err error
	)
	if strings.HasPrefix(value, ":") {
		der, err = decodeRFC9440(value)
	} else {
		der, err = decodeEscapedPEM(value)
	}
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing header certificate: %w", err)
	}
	return cert, nil
}

func decodeRFC9440(value string) ([]byte, error) {
	if len(value) < 2 || !strings.HasSuffix(value, ":") {
		return nil, errors.New("decoding rfc 9440 certificate header: missing closing colon")
	}
	der, err := decodeBase64(value[1 : len(value)-1])
	if err != nil {
		return nil, fmt.Errorf("decoding rfc 9440 certificate header: %w", err)
	}
	return der, nil
}

func decodeEscapedPEM(value string) ([]byte, error) {
	// PathUnescape, not QueryUnescape: the latter would turn every "+" of
	// the base64 text into a space.
	text, err := url.PathUnescape(value)
	if err != nil {
		return nil, fmt.Errorf("unescaping pem certificate header: %w", err)
	}
	// encoding/pem insists on line breaks around the armour lines, which
	// some proxies replace with spaces, so the block is cut out by hand.
	_, rest, ok := strings.Cut(text, pemCertBegin)
	if !ok {
		return nil, errors.New("decoding pem certificate header: no BEGIN CERTIFICATE line")
	}
	payload, _, ok := strings.Cut(rest, pemCertEnd)
	if !ok {
		return nil, errors.New("decoding pem certificate header: no END CERTIFICATE line")
	}
	der, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(payload), ""))
	if err != nil {
		return nil, fmt.Errorf("decoding pem certificate header: %w", err)
	}
	return der, nil
}

// EncodeCertHeaderRFC9440 encodes cert as an RFC 9440 Client-Cert header
// value: ":" + base64(DER) + ":".
func EncodeCertHeaderRFC9440(cert *x509.Certificate) string {
	return ":" + base64.StdEncoding.EncodeToString(cert.Raw) + ":"
}

// EncodeCertHeaderEscapedPEM encodes cert in the style of nginx's
// $ssl_client_escaped_cert: a PEM block with every character other than
// letters, digits and "-_.~" percent-escaped (spaces as %20, line feeds as
// %0A, "+" as %2B).
func EncodeCertHeaderEscapedPEM(cert *x509.Certificate) string {
	// QueryEscape escapes "+" as %2B before it writes spaces as "+", so
	// every "+" left in its output stands for a space.
	return strings.ReplaceAll(url.QueryEscape(string(PEMCertificate(cert.Raw))), "+", "%20")
}
