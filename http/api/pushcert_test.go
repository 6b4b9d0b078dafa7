package api_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/http/api"
	"github.com/nanomdm/nanomdm/log/logtest"
	"github.com/nanomdm/nanomdm/storage/inmem"
)

var oidUID = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}

// rsaKey is generated once: RSA key generation is slow.
var rsaKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func newECKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generating key: %v", err)
	}
	return k
}

// certSpec describes a test push certificate.
type certSpec struct {
	topic    string // subject UID; "" for none
	key      crypto.Signer
	notAfter time.Time
}

// newCertPEM returns a self-signed certificate for spec as PEM.
func newCertPEM(t testing.TB, spec certSpec) []byte {
	t.Helper()
	name := pkix.Name{CommonName: "APSP:test"}
	if spec.topic != "" {
		name.ExtraNames = []pkix.AttributeTypeAndValue{{Type: oidUID, Value: spec.topic}}
	}
	if spec.notAfter.IsZero() {
		spec.notAfter = time.Now().Add(365 * 24 * time.Hour).Truncate(time.Second)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      name,
		NotBefore:    time.Now().Add(-2 * 365 * 24 * time.Hour),
		NotAfter:     spec.notAfter,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, spec.key.Public(), spec.key)
	if err != nil {
		t.Fatalf("creating certificate: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func pkcs8PEM(t testing.TB, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("encoding key: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// keyBody returns the base64 lines of a PEM key, to look for leaks.
func keyBody(keyPEM []byte) []string {
	var out []string
	for _, line := range strings.Split(string(keyPEM), "\n") {
		if len(line) >= 16 && !strings.HasPrefix(line, "-----") && !strings.Contains(line, ":") {
			out = append(out, line)
		}
	}
	return out
}

// do sends a request to h and decodes the JSON answer into a map.
func do(t *testing.T, h http.Handler, method, target string, body []byte) (int, map[string]any, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, bytes.NewReader(body)))
	raw := rec.Body.String()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q, want application/json", method, target, ct)
	}
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("%s %s: answer %q is not a JSON object: %v", method, target, raw, err)
	}
	return rec.Code, m, raw
}

func TestPushCertUpload(t *testing.T) {
	topic := "com.apple.mgmt.External.0b5e6a1f-8d3c-4b2e-9f7a-1c2d3e4f5a6b"
	ecKey := newECKey(t)
	ecCert := newCertPEM(t, certSpec{topic: topic, key: ecKey})
	ecKeyPEM := pkcs8PEM(t, ecKey)
	rsaCert := newCertPEM(t, certSpec{topic: topic, key: rsaKey()})
	rsaKeyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey())})
	otherCA := newCertPEM(t, certSpec{topic: "", key: newECKey(t)})
	// Legacy PEM encryption is what "openssl genrsa -aes256" writes: these
	// headers over ciphertext (random bytes stand in for it).
	cipherText := make([]byte, 1200)
	rand.Read(cipherText)
	encLegacyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{
		"Proc-Type": "4,ENCRYPTED",
		"DEK-Info":  "AES-256-CBC,8A2C1F0E6B3D4A5C9E7F1B2D3C4E5F60",
	}, Bytes: cipherText})
	encPKCS8PEM := pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte("opaque encrypted key bytes, long enough to look real")})
	ecEC, _ := x509.MarshalECPrivateKey(ecKey)
	ecSEC1PEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecEC})
	expiredKey := newECKey(t)
	expired := newCertPEM(t, certSpec{topic: topic, key: expiredKey, notAfter: time.Now().Add(-time.Hour)})
	wrongKey := newECKey(t)
	wrongTopic := newCertPEM(t, certSpec{topic: "com.example.push", key: ecKey})
	noUID := newCertPEM(t, certSpec{key: ecKey})
	badCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not DER at all")})
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	trim := bytes.TrimSpace
	crlf := func(b []byte) []byte { return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n")) }

	for _, tc := range []struct {
		name      string
		body      []byte
		wantCode  int
		wantErr   string // substring of the JSON error
		wantCert  []byte // certificate expected in storage
		keySecret []byte // key that must never appear in answers or logs
	}{
		{"EC PKCS8 cert then key", cat(ecCert, ecKeyPEM), 200, "", ecCert, ecKeyPEM},
		{"RSA PKCS1 key then cert", cat(rsaKeyPEM, rsaCert), 200, "", rsaCert, rsaKeyPEM},
		{"EC SEC1 key", cat(ecCert, ecSEC1PEM), 200, "", ecCert, ecSEC1PEM},
		{"glued without newline", cat(trim(ecCert), trim(ecKeyPEM)), 200, "", ecCert, ecKeyPEM},
		{"glued key first", cat(trim(rsaKeyPEM), trim(rsaCert)), 200, "", rsaCert, rsaKeyPEM},
		{"CRLF line ends", crlf(cat(ecCert, ecKeyPEM)), 200, "", ecCert, ecKeyPEM},
		{"openssl bag attributes", cat([]byte("Bag Attributes\n    localKeyID: 01 02\nsubject=/UID=x\n"), ecCert, []byte("Bag Attributes\n"), ecKeyPEM), 200, "", ecCert, ecKeyPEM},
		{"chain with another certificate first", cat(otherCA, ecCert, ecKeyPEM), 200, "", ecCert, ecKeyPEM},
		{"mismatched key", cat(ecCert, pkcs8PEM(t, wrongKey)), 400, "private key does not match the certificate", nil, pkcs8PEM(t, wrongKey)},
		{"encrypted legacy key", cat(rsaCert, encLegacyPEM), 400, "private key PEM appears to be encrypted", nil, encLegacyPEM},
		{"encrypted PKCS8 key", cat(rsaCert, encPKCS8PEM), 400, "private key PEM appears to be encrypted", nil, encPKCS8PEM},
		{"wrong topic prefix", cat(wrongTopic, ecKeyPEM), 400, `topic "com.example.push" does not start with com.apple.mgmt`, nil, ecKeyPEM},
		{"no UID", cat(noUID, ecKeyPEM), 400, "no UID", nil, ecKeyPEM},
		{"expired", cat(expired, pkcs8PEM(t, expiredKey)), 400, "expired", nil, nil},
		{"garbage", []byte("this is not PEM \x00\xff at all"), 400, "no PEM certificate or private key found", nil, nil},
		{"empty", nil, 400, "empty body", nil, nil},
		{"certificate only", ecCert, 400, "no PEM private key block found", nil, nil},
		{"key only", ecKeyPEM, 400, "no PEM CERTIFICATE block found", nil, ecKeyPEM},
		{"two keys", cat(ecCert, ecKeyPEM, rsaKeyPEM), 400, "more than one private key", nil, ecKeyPEM},
		{"corrupt certificate", cat(badCert, ecKeyPEM), 400, "parsing certificate", nil, ecKeyPEM},
		{"corrupt key", cat(ecCert, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("junk")})), 400, "parsing private key", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := inmem.New()
			logger := &logtest.Recorder{}
			h := api.PushCertHandler(store, api.WithLogger(logger))
			code, m, raw := do(t, h, http.MethodPut, "/v1/pushcert", tc.body)
			if code != tc.wantCode {
				t.Fatalf("PUT: have status %d (%s), want %d", code, raw, tc.wantCode)
			}
			for _, line := range keyBody(tc.keySecret) {
				if strings.Contains(raw, line) {
					t.Errorf("answer contains private key material %q", line)
				}
				if strings.Contains(strings.Join(logger.Text(), "\n"), line) {
					t.Errorf("log contains private key material %q", line)
				}
			}
			if tc.wantCode != 200 {
				msg, _ := m["error"].(string)
				if !strings.Contains(msg, tc.wantErr) {
					t.Errorf("PUT: have error %q, want it to contain %q", msg, tc.wantErr)
				}
				return
			}
			want, _ := pem.Decode(tc.wantCert)
			leaf, _ := x509.ParseCertificate(want.Bytes)
			wantAfter := leaf.NotAfter.UTC().Format(time.RFC3339)
			if m["topic"] != topic || m["not_after"] != wantAfter {
				t.Errorf("PUT answer: have %s, want topic %q, not_after %q", raw, topic, wantAfter)
			}
			cert, _, err := store.RetrievePushCert(context.Background(), topic)
			if err != nil {
				t.Fatalf("retrieving stored cert: %v", err)
			}
			if !bytes.Equal(cert.Certificate[0], leaf.Raw) || len(cert.Certificate) != 1 {
				t.Errorf("stored %d certificates, want only the one matching the key", len(cert.Certificate))
			}
			code, m, raw = do(t, h, http.MethodGet, "/v1/pushcert?topic="+topic, nil)
			if code != 200 || m["topic"] != topic || m["not_after"] != wantAfter {
				t.Errorf("GET: have %d %s, want 200 topic %q not_after %q", code, raw, topic, wantAfter)
			}
			if !strings.Contains(strings.Join(logger.Text(), "\n"), topic) {
				t.Errorf("upload not logged with its topic: %s", strings.Join(logger.Text(), "\n"))
			}
		})
	}
}

func TestPushCertGet(t *testing.T) {
	h := api.PushCertHandler(inmem.New())
	if code, m, raw := do(t, h, http.MethodGet, "/v1/pushcert?topic=com.apple.mgmt.none", nil); code != 404 || m["error"] == "" {
		t.Errorf("GET unknown topic: have %d %s, want 404 with an error", code, raw)
	}
	if code, m, raw := do(t, h, http.MethodGet, "/v1/pushcert", nil); code != 200 || fmt.Sprint(m["push_certs"]) != "[]" {
		t.Errorf("GET without topic and nothing stored: have %d %s, want 200 and an empty push_certs list", code, raw)
	}
	if code, _, raw := do(t, h, http.MethodPost, "/v1/pushcert", nil); code != 405 {
		t.Errorf("POST: have %d %s, want 405", code, raw)
	}
}

// TestPushCertList checks that GET without a topic lists every stored
// certificate with its expiry, in topic order.
func TestPushCertList(t *testing.T) {
	store := inmem.New()
	h := api.PushCertHandler(store)
	want := map[string]string{}
	for _, topic := range []string{"com.apple.mgmt.b", "com.apple.mgmt.a"} {
		key := newECKey(t)
		code, m, raw := do(t, h, http.MethodPut, "/v1/pushcert", append(newCertPEM(t, certSpec{topic: topic, key: key}), pkcs8PEM(t, key)...))
		if code != 200 {
			t.Fatalf("PUT %s: have %d %s, want 200", topic, code, raw)
		}
		want[topic] = fmt.Sprint(m["not_after"])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/pushcert", nil))
	var list api.PushCertsResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &list); rec.Code != 200 || err != nil {
		t.Fatalf("GET list: have %d %s (%v), want 200 and a push_certs list", rec.Code, rec.Body, err)
	}
	var topics []string
	for _, pc := range list.PushCerts {
		topics = append(topics, pc.Topic)
		if have := pc.NotAfter.Format(time.RFC3339); have != want[pc.Topic] {
			t.Errorf("%s: not_after %s, want %s (as PUT answered)", pc.Topic, have, want[pc.Topic])
		}
	}
	if fmt.Sprint(topics) != "[com.apple.mgmt.a com.apple.mgmt.b]" {
		t.Errorf("listed topics %v, want both in topic order", topics)
	}
}

func TestPushCertBodyLimit(t *testing.T) {
	h := api.PushCertHandler(inmem.New(), api.WithBodyLimit(1024))
	if code, _, raw := do(t, h, http.MethodPut, "/v1/pushcert", bytes.Repeat([]byte("A"), 2048)); code != http.StatusRequestEntityTooLarge {
		t.Errorf("PUT of 2 KiB with a 1 KiB limit: have %d %s, want 413", code, raw)
	}
}

// failingStore fails every push certificate operation.
type failingStore struct{ api.PushCertStore }

var errDiskFull = errors.New("disk full")

func (failingStore) StorePushCert(context.Context, []byte, []byte) error { return errDiskFull }
func (failingStore) RetrievePushCert(context.Context, string) (*tls.Certificate, string, error) {
	return nil, "", errDiskFull
}

func (failingStore) RetrievePushCertTopics(context.Context) ([]string, error) {
	return nil, errDiskFull
}

func TestPushCertStorageFailure(t *testing.T) {
	key := newECKey(t)
	body := append(newCertPEM(t, certSpec{topic: "com.apple.mgmt.x", key: key}), pkcs8PEM(t, key)...)
	h := api.PushCertHandler(failingStore{})
	if code, m, raw := do(t, h, http.MethodPut, "/v1/pushcert", body); code != 500 || !strings.Contains(fmt.Sprint(m["error"]), "disk full") {
		t.Errorf("PUT with failing storage: have %d %s, want 500 with the storage error", code, raw)
	}
	if code, _, raw := do(t, h, http.MethodGet, "/v1/pushcert?topic=com.apple.mgmt.x", nil); code != 500 {
		t.Errorf("GET with failing storage: have %d %s, want 500", code, raw)
	}
	if code, m, raw := do(t, h, http.MethodGet, "/v1/pushcert", nil); code != 500 || !strings.Contains(fmt.Sprint(m["error"]), "disk full") {
		t.Errorf("GET list with failing storage: have %d %s, want 500 with the storage error", code, raw)
	}
}
