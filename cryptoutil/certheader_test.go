package cryptoutil

import (
	"encoding/base64"
	"net/url"
	"strings"
	"testing"

	"github.com/nanomdm/nanomdm/internal/fixture"
)

func TestParseCertHeader(t *testing.T) {
	t.Parallel()
	capture, err := VerifyMdmSignature(string(fixture.Read(t, idleReportHeaderFile)), fixture.Read(t, idleReportBodyFile))
	if err != nil {
		t.Fatalf("reading certificate from capture: %v", err)
	}
	generated := newCurrentIdentity(t, newRSAKey(t))

	for _, cert := range []struct {
		name string
		raw  []byte
	}{{"capture", capture.Raw}, {"generated", generated.Raw}} {
		pemText := string(PEMCertificate(cert.raw))
		b64 := base64.StdEncoding.EncodeToString(cert.raw)
		tests := []struct {
			name  string
			value string
		}{
			{"rfc 9440", ":" + b64 + ":"},
			{"rfc 9440 without padding", ":" + strings.TrimRight(b64, "=") + ":"},
			{"rfc 9440 with surrounding space", "  :" + b64 + ": "},
			{"nginx escaped pem", strings.ReplaceAll(url.QueryEscape(pemText), "+", "%20")},
			{"path escaped pem, plus and slash kept", url.PathEscape(pemText)},
			{"lower-case escapes", lowerEscapes(strings.ReplaceAll(url.QueryEscape(pemText), "+", "%20"))},
			{"unescaped pem", pemText},
			{"pem on one line", strings.ReplaceAll(pemText, "\n", " ")},
			{"pem with crlf", strings.ReplaceAll(pemText, "\n", "\r\n")},
			{"two pem certificates", url.PathEscape(pemText + string(PEMCertificate(generated.Raw)))},
		}
		for _, tt := range tests {
			t.Run(cert.name+"/"+tt.name, func(t *testing.T) {
				have, err := ParseCertHeader(tt.value)
				if err != nil {
					t.Fatalf("ParseCertHeader: %v", err)
				}
				if have, want := CertHash(have), CertHash(capture); cert.name == "capture" && have != want {
					t.Errorf("certificate hash: have %s, want %s", have, want)
				}
				if string(have.Raw) != string(cert.raw) {
					t.Errorf("certificate differs from the encoded one")
				}
			})
		}
	}
}

// lowerEscapes rewrites the hex digits of percent escapes in lower case.
func lowerEscapes(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			b.WriteString(strings.ToLower(s[i : i+3]))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func TestCertHeaderEncoders(t *testing.T) {
	t.Parallel()
	cert := newCurrentIdentity(t, newECKey(t))
	tests := []struct {
		name    string
		encode  func(*testing.T) string
		wantPre string
	}{
		{"rfc 9440", func(*testing.T) string { return EncodeCertHeaderRFC9440(cert) }, ":MII"},
		{"escaped pem", func(*testing.T) string { return EncodeCertHeaderEscapedPEM(cert) }, "-----BEGIN%20CERTIFICATE-----%0AMII"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			value := tt.encode(t)
			if !strings.HasPrefix(value, tt.wantPre) {
				t.Errorf("have %.40q..., want prefix %q", value, tt.wantPre)
			}
			if i := strings.IndexAny(value, " \n+/="); i >= 0 && tt.name == "escaped pem" {
				t.Errorf("have unescaped %q at %d in %q", value[i], i, value)
			}
			have, err := ParseCertHeader(value)
			if err != nil {
				t.Fatalf("ParseCertHeader: %v", err)
			}
			if !have.Equal(cert) {
				t.Errorf("round trip: have serial %v, want %v", have.SerialNumber, cert.SerialNumber)
			}
		})
	}
}

func TestParseCertHeaderErrors(t *testing.T) {
	t.Parallel()
	cert := newCurrentIdentity(t, newECKey(t))
	good := EncodeCertHeaderRFC9440(cert)
	pemText := string(PEMCertificate(cert.Raw))

	tests := []struct {
		name    string
		value   string
		wantErr error
	}{
		{"empty", "", ErrNoCertificate},
		{"whitespace", "  \t", ErrNoCertificate},
		{"too large", ":" + strings.Repeat("A", MaxCertHeaderSize) + ":", ErrCertHeaderTooLarge},
		{"lone colon", ":", errAny},
		{"missing closing colon", strings.TrimSuffix(good, ":"), errAny},
		{"empty byte sequence", "::", errAny},
		{"bad base64", ":not*base64:", errAny},
		{"base64 of garbage", ":" + base64.StdEncoding.EncodeToString([]byte("garbage")) + ":", errAny},
		{"truncated der", good[:len(good)/2] + ":", errAny},
		{"plain text", "hello", errAny},
		{"bad escape", "%zz" + url.PathEscape(pemText), errAny},
		{"no end line", strings.Split(pemText, "-----END")[0], errAny},
		{"form-encoded spaces", url.QueryEscape(pemText), errAny},
		{"garbage inside pem", "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n", errAny},
		{"bare base64 der", strings.Trim(good, ":"), errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert, err := ParseCertHeader(tt.value)
			checkErr(t, err, tt.wantErr)
			if cert != nil {
				t.Errorf("have certificate alongside an error, want nil")
			}
		})
	}
}
