package scep_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	smallscep "github.com/smallstep/scep"
	"github.com/smallstep/scep/x509util"

	"github.com/nanomdm/nanomdm/http/scep"
	"github.com/nanomdm/nanomdm/mdm/simulator"
	"github.com/nanomdm/nanomdm/storage/inmem"
)

// rsaKey is the fixed test key of testdata/rsa.key, 1024 bits: RSA key
// generation and private-key operations are slow, above all in the
// coverage-instrumented fuzzing build, and no test compares keys.
var rsaKey = sync.OnceValue(func() *rsa.PrivateKey {
	b, err := os.ReadFile("testdata/rsa.key")
	if err != nil {
		panic(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		panic("testdata/rsa.key: no PEM block")
	}
	k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
	if err != nil {
		panic(err)
	}
	return k
})

// newCA returns a SCEP CA (RSA) and its certificate.
func newCA(t testing.TB, opts ...scep.CAOption) (*scep.CA, *simulator.CA) {
	t.Helper()
	sim, err := simulator.NewCAWithKey("test SCEP CA", rsaKey())
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := sim.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := scep.NewCA(sim.CertPEM(), keyPEM, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return ca, sim
}

// observed counts outcomes.
type observed struct {
	mu sync.Mutex
	n  map[scep.Outcome]int
}

func (o *observed) ObserveSCEP(out scep.Outcome) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n == nil {
		o.n = map[scep.Outcome]int{}
	}
	o.n[out]++
}

func (o *observed) count(out scep.Outcome) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n[out]
}

// newServer serves SCEP with static challenge "static" and one-time
// challenges in an inmem store.
func newServer(t testing.TB) (*httptest.Server, *scep.Challenges, *simulator.CA, *observed) {
	t.Helper()
	ca, sim := newCA(t)
	challenges := scep.NewChallenges("static", inmem.New(), time.Minute)
	obs := &observed{}
	srv := httptest.NewServer(scep.Handler(ca, challenges, scep.WithObserver(obs)))
	t.Cleanup(srv.Close)
	return srv, challenges, sim, obs
}

// request builds a PKIOperation message for a CSR with challenge,
// encrypted to recipient and signed by a throwaway certificate.
func request(t testing.TB, recipient *x509.Certificate, challenge string) []byte {
	t.Helper()
	key := rsaKey()
	csrDER, err := x509util.CreateCertificateRequest(rand.Reader, &x509util.CertificateRequest{
		CertificateRequest: x509.CertificateRequest{Subject: pkix.Name{CommonName: "device"}},
		ChallengePassword:  challenge,
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "device"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	self, _ := x509.ParseCertificate(der)
	msg, err := smallscep.NewCSRRequest(csr, &smallscep.PKIMessage{
		MessageType: smallscep.PKCSReq, Recipients: []*x509.Certificate{recipient}, SignerKey: key, SignerCert: self,
	})
	if err != nil {
		t.Fatal(err)
	}
	return msg.Raw
}

func post(t testing.TB, u string, body []byte) (int, []byte) {
	t.Helper()
	resp, err := http.Post(u, "application/x-pki-message", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// certRep reads a CertRep answer.
func certRep(t *testing.T, ca *x509.Certificate, body []byte) *smallscep.PKIMessage {
	t.Helper()
	rep, err := smallscep.ParsePKIMessage(body, smallscep.WithCACerts([]*x509.Certificate{ca}))
	if err != nil || rep.CertRepMessage == nil {
		t.Fatalf("answer is not a CertRep: %v", err)
	}
	return rep
}

func TestGetCACertAndCaps(t *testing.T) {
	t.Parallel()
	srv, _, sim, _ := newServer(t)
	resp, err := http.Get(srv.URL + "?operation=GetCACert")
	if err != nil {
		t.Fatal(err)
	}
	der, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(der, sim.Cert.Raw) || resp.Header.Get("Content-Type") != "application/x-x509-ca-cert" {
		t.Errorf("GetCACert: have %q and %d bytes, want the CA certificate", resp.Header.Get("Content-Type"), len(der))
	}
	resp, err = http.Get(srv.URL + "?operation=GetCACaps")
	if err != nil {
		t.Fatal(err)
	}
	caps, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"POSTPKIOperation", "Renewal", "SHA-256", "AES"} {
		if !strings.Contains(string(caps), want+"\n") {
			t.Errorf("GetCACaps %q lacks %s", caps, want)
		}
	}
}

// TestPKIOperation covers the answers to good and bad requests.
func TestPKIOperation(t *testing.T) {
	t.Parallel()
	srv, challenges, sim, obs := newServer(t)
	other, err := simulator.NewCAWithKey("another CA", rsaKey())
	if err != nil {
		t.Fatal(err)
	}
	u := srv.URL + "?operation=PKIOperation"

	// Static challenge: a certificate for the CSR's key and subject.
	status, body := post(t, u, request(t, sim.Cert, "static"))
	rep := certRep(t, sim.Cert, body)
	if status != http.StatusOK || rep.PKIStatus != smallscep.SUCCESS {
		t.Fatalf("good request: have %d, status %s %s", status, rep.PKIStatus, rep.FailInfo)
	}

	// One-time challenge over GET, once.
	minted, _, err := challenges.Mint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	getURL := u + "&message=" + url.QueryEscape(base64.StdEncoding.EncodeToString(request(t, sim.Cert, minted)))
	for i, want := range []smallscep.PKIStatus{smallscep.SUCCESS, smallscep.FAILURE} {
		resp, err := http.Get(getURL)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if rep := certRep(t, sim.Cert, b); rep.PKIStatus != want {
			t.Errorf("one-time challenge over GET, use %d: have %s, want %s", i+1, rep.PKIStatus, want)
		}
	}

	for _, tc := range []struct {
		name string
		body []byte
		want smallscep.FailInfo
	}{
		{"wrong challenge", request(t, sim.Cert, "wrong"), smallscep.BadRequest},
		{"no challenge", request(t, sim.Cert, ""), smallscep.BadRequest},
		{"encrypted to another CA", request(t, other.Cert, "static"), smallscep.BadMessageCheck},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := post(t, u, tc.body)
			rep := certRep(t, sim.Cert, body)
			if status != http.StatusOK || rep.PKIStatus != smallscep.FAILURE || rep.FailInfo != tc.want {
				t.Errorf("have %d %s %s, want 200 FAILURE %s", status, rep.PKIStatus, rep.FailInfo, tc.want)
			}
		})
	}
	if have := obs.count(scep.BadChallenge); have != 3 {
		t.Errorf("bad challenges counted: have %d, want 3", have)
	}

	for _, tc := range []struct {
		name   string
		method string
		url    string
		body   []byte
		want   int
	}{
		{"not SCEP", http.MethodPost, u, []byte("hello"), http.StatusBadRequest},
		{"empty", http.MethodPost, u, nil, http.StatusBadRequest},
		{"too large", http.MethodPost, u, bytes.Repeat([]byte{0x30}, scep.DefaultBodyLimit+1), http.StatusRequestEntityTooLarge},
		{"too large over GET", http.MethodGet, u + "&message=" + strings.Repeat("A", 2*scep.DefaultBodyLimit), nil, http.StatusRequestEntityTooLarge},
		{"bad base64", http.MethodGet, u + "&message=%25%25", nil, http.StatusBadRequest},
		{"unknown operation", http.MethodGet, srv.URL + "?operation=GetCRL", nil, http.StatusBadRequest},
		{"wrong method", http.MethodDelete, u, nil, http.StatusMethodNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, tc.url, bytes.NewReader(tc.body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("have %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}

// TestIssue checks what the CA puts in a certificate.
func TestIssue(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	ca, sim := newCA(t, scep.WithCertDays(30), scep.WithCAClock(func() time.Time { return now }))
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "dev", Organization: []string{"Org"}}}, rsaKey())
	if err != nil {
		t.Fatal(err)
	}
	csr, _ := x509.ParseCertificateRequest(csrDER)
	seen := map[string]bool{}
	for range 50 {
		cert, err := ca.Issue(csr)
		if err != nil {
			t.Fatal(err)
		}
		if cert.Subject.String() != csr.Subject.String() || !cert.NotAfter.Equal(now.AddDate(0, 0, 30)) ||
			len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth || cert.CheckSignatureFrom(sim.Cert) != nil {
			t.Fatalf("issued: subject %s, not after %v, EKU %v", cert.Subject, cert.NotAfter, cert.ExtKeyUsage)
		}
		if cert.SerialNumber.Sign() <= 0 || cert.SerialNumber.BitLen() > 127 || seen[cert.SerialNumber.String()] {
			t.Fatalf("serial %v: want positive, at most 127 bits, unique", cert.SerialNumber)
		}
		seen[cert.SerialNumber.String()] = true
	}
}

func TestNewCARefuses(t *testing.T) {
	t.Parallel()
	ec, err := simulator.NewCA("EC CA")
	if err != nil {
		t.Fatal(err)
	}
	ecKey, _ := ec.KeyPEM()
	if _, err := scep.NewCA(ec.CertPEM(), ecKey); !errors.Is(err, scep.ErrNotRSA) {
		t.Errorf("EC key: have %v, want ErrNotRSA", err)
	}
	_, sim := newCA(t)
	key, _ := sim.KeyPEM()
	if _, err := scep.NewCA(sim.CertPEM(), key, scep.WithCertDays(0)); err == nil {
		t.Error("0 days accepted")
	}
	if _, err := scep.NewCA(ec.CertPEM(), key); err == nil {
		t.Error("key of another certificate accepted")
	}
}

// FuzzPKIOperation feeds arbitrary bodies to PKIOperation: the handler
// answers 200 (a CertRep) or 400, and never panics.
func FuzzPKIOperation(f *testing.F) {
	ca, sim := newCA(f)
	h := scep.Handler(ca, scep.NewChallenges("static", inmem.New(), time.Minute))
	f.Add(request(f, sim.Cert, "static"))
	f.Add(request(f, sim.Cert, "wrong"))
	f.Add([]byte{0x30, 0x80, 0x06, 0x09})
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/scep?operation=PKIOperation", bytes.NewReader(body)))
		if rec.Code != http.StatusOK && rec.Code != http.StatusBadRequest {
			t.Errorf("answered %d", rec.Code)
		}
	})
}
