package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"

	"github.com/nanomdm/nanomdm/http/enroll"
	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/mdm/simulator"
	"github.com/nanomdm/nanomdm/storage/storagetest"
)

// scepCA writes an RSA CA (SCEP clients encrypt to its key) to dir and
// returns it with the paths of its certificate and key.
func scepCA(t *testing.T, dir string) (*simulator.CA, string, string) {
	t.Helper()
	ca, err := simulator.NewRSACA("e2e SCEP CA")
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath := filepath.Join(dir, "scep-ca.pem"), filepath.Join(dir, "scep-ca.key")
	if err := ca.WriteFiles(certPath, keyPath); err != nil {
		t.Fatal(err)
	}
	return ca, certPath, keyPath
}

// getMetrics returns the /metrics text of s.
func getMetrics(t *testing.T, s *server) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.url+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("nanomdm", testAPIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestEnrollByProfile runs the whole enrollment a device goes through
// with -enroll and the embedded SCEP server: download the profile (token
// required), get an identity by SCEP with the profile's one-time
// challenge, check in, answer a command. Used, wrong and minted
// challenges and renewal are checked against the same server.
func TestEnrollByProfile(t *testing.T) {
	for _, backend := range []string{"inmem", "file"} {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			ca, certPath, keyPath := scepCA(t, t.TempDir())
			s := startServer(t, "-storage", backend, "-public-url", "http://{addr}", "-enroll",
				"-scep-ca-cert", certPath, "-scep-ca-key", keyPath, "-enroll-token", "s3cret")

			// Without a push certificate there is no topic to put in the
			// profile.
			if resp, err := http.Get(s.url + "/mdm/enroll?token=s3cret"); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("profile before a push certificate: have %v, %v; want 503", resp.StatusCode, err)
			}
			topic := "com.apple.mgmt.External.e2e-enroll"
			certPEM, keyPEM := storagetest.NewPushCert(t, topic)
			if status, m := apiCall(t, s, http.MethodPut, "/v1/pushcert", append(certPEM, keyPEM...), true); status != http.StatusOK {
				t.Fatalf("push cert upload: %d %v", status, m)
			}

			for _, q := range []string{"", "?token=wrong"} {
				resp, err := http.Get(s.url + "/mdm/enroll" + q)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusForbidden {
					t.Errorf("profile with token %q: have %d, want 403", q, resp.StatusCode)
				}
			}

			key, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				t.Fatal(err)
			}
			d, p, err := simulator.EnrollFromProfile(ctx, nil, s.url+"/mdm/enroll?token=s3cret", key)
			if err != nil {
				t.Fatalf("enrolling from profile: %v\n%s", err, s.logs.String())
			}
			if p.Topic != topic || p.ServerURL != s.url+"/mdm" || p.SCEPURL != s.url+"/scep" || !p.SignMessage || p.Signed {
				t.Errorf("profile: have %+v", p)
			}
			id := d.Identity.Cert
			if err := id.CheckSignatureFrom(ca.Cert); err != nil {
				t.Errorf("identity not issued by the SCEP CA: %v", err)
			}
			if !slices.Equal(id.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) || id.Subject.CommonName != d.UDID() {
				t.Errorf("identity: EKU %v, subject %q; want client auth, %q", id.ExtKeyUsage, id.Subject.CommonName, d.UDID())
			}
			if days := time.Until(id.NotAfter).Hours() / 24; days < 364 || days > 366 {
				t.Errorf("identity valid for %.1f days, want 365", days)
			}

			cmd, err := mdm.NewCommand("enroll-e2e-"+backend, "DeviceInformation", nil)
			if err != nil {
				t.Fatal(err)
			}
			if status, a := enqueue(t, s, []string{d.UDID()}, cmd, "?nopush=1"); status != http.StatusOK {
				t.Fatalf("enqueue: %d %+v", status, a)
			}
			got, err := d.Channel.Drain(ctx, simulator.Acknowledge, 5)
			if err != nil || len(got) != 1 || got[0].CommandUUID != cmd.CommandUUID {
				t.Fatalf("commands answered by the enrolled device: have %v, %v; want %s", got, err, cmd.CommandUUID)
			}

			sc := &simulator.SCEPClient{URL: p.SCEPURL, Key: key}
			// The profile's one-time challenge was used by the enrollment;
			// a made-up one was never good.
			for _, challenge := range []string{p.Challenge, "made-up"} {
				if _, err := sc.Enroll(ctx, "intruder", challenge); !errors.Is(err, simulator.ErrSCEPFailure) || !strings.Contains(err.Error(), "badRequest") {
					t.Errorf("SCEP with challenge %q: have %v, want a badRequest failure", challenge, err)
				}
			}

			// A challenge minted through the API is good once.
			status, m := apiCall(t, s, http.MethodPost, "/v1/scep/challenge", nil, true)
			challenge, _ := m["challenge"].(string)
			expires, _ := m["expires_at"].(string)
			if exp, err := time.Parse(time.RFC3339, expires); status != http.StatusOK || challenge == "" || err != nil || !exp.After(time.Now()) {
				t.Fatalf("minting a challenge: %d %v", status, m)
			}
			if _, err := sc.Enroll(ctx, "second", challenge); err != nil {
				t.Errorf("SCEP with a minted challenge: %v", err)
			}
			if _, err := sc.Enroll(ctx, "third", challenge); !errors.Is(err, simulator.ErrSCEPFailure) {
				t.Errorf("SCEP with a minted challenge used twice: have %v, want a failure", err)
			}

			// Renewal: the current identity stands in for a challenge, and
			// the device authenticates with the new one.
			renewed, err := sc.Renew(ctx, d.Identity)
			if err != nil {
				t.Fatalf("renewing: %v", err)
			}
			if renewed.Cert.SerialNumber.Cmp(id.SerialNumber) == 0 || renewed.Cert.Subject.CommonName != d.UDID() {
				t.Errorf("renewed identity: serial %v, subject %q", renewed.Cert.SerialNumber, renewed.Cert.Subject.CommonName)
			}
			d.Identity = renewed
			if err := d.Authenticate(ctx); err != nil {
				t.Errorf("Authenticate with the renewed identity: %v", err)
			}

			// A renewal signed by an identity of another CA needs a
			// challenge like any first request.
			foreign, err := s.ca.Issue("foreign")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := sc.Renew(ctx, foreign); !errors.Is(err, simulator.ErrSCEPFailure) {
				t.Errorf("renewal signed by a foreign identity: have %v, want a failure", err)
			}

			metricsText := getMetrics(t, s)
			for _, want := range []string{
				`nanomdm_scep_requests_total{outcome="bad_challenge"} 4`,
				`nanomdm_scep_requests_total{outcome="issued"} 2`,
				`nanomdm_scep_requests_total{outcome="renewed"} 1`,
			} {
				if !strings.Contains(metricsText, want) {
					t.Errorf("metrics lack %s", want)
				}
			}
			if !strings.Contains(s.logs.String(), "wrong, used or expired challenge") {
				t.Errorf("refused challenge not logged:\n%s", s.logs.String())
			}
		})
	}
}

// TestSignedProfile: with -enroll-sign-cert/-key the profile is CMS
// SignedData that verifies with the signing certificate and holds the
// plain profile; -enroll-topic and an external SCEP server need no push
// certificate and no embedded CA.
func TestSignedProfile(t *testing.T) {
	dir := t.TempDir()
	signer, err := simulator.NewCA("profile signer")
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath := filepath.Join(dir, "sign.pem"), filepath.Join(dir, "sign.key")
	if err := signer.WriteFiles(certPath, keyPath); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, "-public-url", "https://mdm.example.com", "-enroll", "-checkin",
		"-enroll-topic", "com.apple.mgmt.External.signed", "-enroll-scep-url", "https://scep.example.com/scep",
		"-enroll-scep-challenge", "static-one", "-enroll-sign-cert", certPath, "-enroll-sign-key", keyPath,
		"-enroll-root-ca", certPath)
	resp, err := http.Get(s.url + "/mdm/enroll")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != enroll.ContentType {
		t.Fatalf("signed profile: have %d %q", resp.StatusCode, ct)
	}
	p7, err := pkcs7.Parse(raw)
	if err != nil {
		t.Fatalf("profile is not CMS: %v", err)
	}
	if err := p7.Verify(); err != nil {
		t.Errorf("signature does not verify: %v", err)
	}
	if signerCert := p7.GetOnlySigner(); signerCert == nil || !signerCert.Equal(signer.Cert) {
		t.Errorf("signed by %v, want the -enroll-sign-cert", signerCert)
	}
	p, err := simulator.ParseProfile(raw)
	if err != nil {
		t.Fatal(err)
	}
	want := simulator.Profile{
		ServerURL: "https://mdm.example.com/mdm", CheckInURL: "https://mdm.example.com/checkin",
		Topic: "com.apple.mgmt.External.signed", SignMessage: true,
		SCEPURL: "https://scep.example.com/scep", Challenge: "static-one", Signed: true,
	}
	if *p != want {
		t.Errorf("profile: have %+v, want %+v", *p, want)
	}
	if !bytes.Contains(p7.Content, signer.Cert.Raw[:64]) && !bytes.Contains(p7.Content, []byte("com.apple.security.root")) {
		t.Errorf("profile lacks the root CA payload")
	}
}
