package scep_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/http/httptest"
	"testing"
	"time"

	kitlog "github.com/go-kit/kit/log"
	scepclient "github.com/micromdm/scep/v2/client"
	smallscep "github.com/smallstep/scep"
	"github.com/smallstep/scep/x509util"

	"github.com/nanomdm/nanomdm/http/scep"
	"github.com/nanomdm/nanomdm/storage/inmem"
)

// TestInteropMicroMDMClient enrolls with the SCEP client of
// github.com/micromdm/scep (the HTTP client its scepclient tool uses),
// not with our simulator: capabilities, CA certificate and a PKCSReq
// over the transport it picks. The PKCS#7 messages themselves are built
// by github.com/smallstep/scep on both sides: no SCEP client with a
// message layer of its own is served by the Go module proxy.
func TestInteropMicroMDMClient(t *testing.T) {
	t.Parallel()
	ca, _ := newCA(t)
	challenges := scep.NewChallenges("", inmem.New(), time.Minute)
	srv := httptest.NewServer(scep.Handler(ca, challenges))
	defer srv.Close()
	ctx := context.Background()

	client, err := scepclient.New(srv.URL, kitlog.NewNopLogger())
	if err != nil {
		t.Fatal(err)
	}
	caps, err := client.GetCACaps(ctx)
	if err != nil || !client.Supports("POSTPKIOperation") || !client.Supports("SHA-256") {
		t.Fatalf("GetCACaps: %q, %v", caps, err)
	}
	der, _, err := client.GetCACert(ctx, "")
	if err != nil {
		t.Fatalf("GetCACert: %v", err)
	}
	caCert, err := x509.ParseCertificate(der)
	if err != nil || !caCert.Equal(ca.Certificate()) {
		t.Fatalf("GetCACert answered another certificate: %v", err)
	}

	challenge, _, err := challenges.Mint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	key := rsaKey()
	csrDER, err := x509util.CreateCertificateRequest(rand.Reader, &x509util.CertificateRequest{
		CertificateRequest: x509.CertificateRequest{Subject: pkix.Name{CommonName: "interop device", Organization: []string{"Interop"}}},
		ChallengePassword:  challenge,
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, _ := x509.ParseCertificateRequest(csrDER)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: csr.Subject,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	selfDER, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	self, _ := x509.ParseCertificate(selfDER)
	msg, err := smallscep.NewCSRRequest(csr, &smallscep.PKIMessage{
		MessageType: smallscep.PKCSReq, Recipients: []*x509.Certificate{caCert}, SignerKey: key, SignerCert: self,
	})
	if err != nil {
		t.Fatal(err)
	}
	answer, err := client.PKIOperation(ctx, msg.Raw)
	if err != nil {
		t.Fatalf("PKIOperation: %v", err)
	}
	rep, err := smallscep.ParsePKIMessage(answer, smallscep.WithCACerts([]*x509.Certificate{caCert}))
	if err != nil || rep.CertRepMessage == nil || rep.PKIStatus != smallscep.SUCCESS {
		t.Fatalf("CertRep: %v %+v", err, rep)
	}
	if err := rep.DecryptPKIEnvelope(self, key); err != nil {
		t.Fatalf("decrypting CertRep: %v", err)
	}
	cert := rep.CertRepMessage.Certificate
	if cert.Subject.CommonName != "interop device" || cert.CheckSignatureFrom(caCert) != nil {
		t.Errorf("issued %s, want the CSR's subject signed by the CA", cert.Subject)
	}
}
