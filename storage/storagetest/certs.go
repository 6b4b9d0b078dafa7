package storagetest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/cryptoutil"
	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/storage"
)

func testPushCert(t *testing.T, s storage.AllStorage) {
	ctx := context.Background()
	topic := NewTopic()
	if _, _, err := s.RetrievePushCert(ctx, topic); !errors.Is(err, storage.ErrNoPushCert) {
		t.Fatalf("retrieving push cert of unknown topic: have error %v, want %v", err, storage.ErrNoPushCert)
	}

	pemCert, pemKey := NewPushCert(t, topic)
	if err := s.StorePushCert(ctx, pemCert, pemKey); err != nil {
		t.Fatalf("storing push cert: %v", err)
	}
	_, token := wantPushCert(t, s, topic, pemCert)
	if stale, err := s.IsPushCertStale(ctx, topic, token); err != nil || stale {
		t.Fatalf("IsPushCertStale right after retrieve: have %v, %v; want false, no error", stale, err)
	}
	// Storing the same certificate again changes nothing.
	if err := s.StorePushCert(ctx, pemCert, pemKey); err != nil {
		t.Fatalf("storing push cert again: %v", err)
	}
	if stale, err := s.IsPushCertStale(ctx, topic, token); err != nil || stale {
		t.Errorf("IsPushCertStale after storing the same cert: have %v, %v; want false, no error", stale, err)
	}

	newCert, newKey := NewPushCert(t, topic)
	if err := s.StorePushCert(ctx, newCert, newKey); err != nil {
		t.Fatalf("storing renewed push cert: %v", err)
	}
	if stale, err := s.IsPushCertStale(ctx, topic, token); err != nil || !stale {
		t.Fatalf("IsPushCertStale after renewal: have %v, %v; want true, no error", stale, err)
	}
	_, newToken := wantPushCert(t, s, topic, newCert)
	if newToken == token {
		t.Errorf("stale token unchanged (%q) after storing a new certificate", token)
	}
	if stale, err := s.IsPushCertStale(ctx, topic, newToken); err != nil || stale {
		t.Errorf("IsPushCertStale with the new token: have %v, %v; want false, no error", stale, err)
	}

	if _, _, err := s.RetrievePushCert(ctx, NewTopic()); !errors.Is(err, storage.ErrNoPushCert) {
		t.Errorf("retrieving push cert of another topic: have error %v, want %v", err, storage.ErrNoPushCert)
	}
	otherCert, _ := NewPushCert(t, topic)
	if err := s.StorePushCert(ctx, otherCert, newKey); err == nil {
		t.Errorf("storing a certificate with a key that does not match: have no error")
	}
	wantPushCert(t, s, topic, newCert)
}

// wantPushCert retrieves the push cert of topic and checks that it is the
// certificate of pemCert with a private key that signs for it.
func wantPushCert(t *testing.T, s storage.PushCertStore, topic string, pemCert []byte) (*tls.Certificate, string) {
	t.Helper()
	cert, token, err := s.RetrievePushCert(context.Background(), topic)
	if err != nil {
		t.Fatalf("retrieving push cert: %v", err)
	}
	if token == "" {
		t.Errorf("retrieving push cert: empty stale token")
	}
	want, err := cryptoutil.ParseCertificatesPEM(pemCert)
	if err != nil {
		t.Fatalf("parsing test cert: %v", err)
	}
	if cert == nil || len(cert.Certificate) == 0 || !bytes.Equal(cert.Certificate[0], want[0].Raw) {
		t.Fatalf("retrieved push cert is not the one stored last")
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatalf("parsing retrieved cert: %v", err)
	}
	if have, err := cryptoutil.TopicFromCert(leaf); err != nil || have != topic {
		t.Errorf("retrieved cert topic: have %q, %v; want %q", have, err, topic)
	}
	signer, ok := cert.PrivateKey.(crypto.Signer)
	if !ok {
		t.Fatalf("retrieved private key %T is not a crypto.Signer", cert.PrivateKey)
	}
	digest := sha256.Sum256([]byte("push"))
	sig, err := signer.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatalf("signing with retrieved key: %v", err)
	}
	if err := leaf.CheckSignature(x509.ECDSAWithSHA256, []byte("push"), sig); err != nil {
		t.Errorf("retrieved key does not match the certificate: %v", err)
	}
	return cert, token
}

func randomHash() string {
	return hex.EncodeToString(randomBytes(32))
}

func testCertAuth(t *testing.T, s storage.AllStorage) {
	dev, other := NewDevice(t), NewDevice(t)
	user := dev.NewUser(t)
	h1, h2 := randomHash(), randomHash()
	notAfter := time.Now().Add(365 * 24 * time.Hour)

	check := func(what string, have bool, err error, want bool) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if have != want {
			t.Fatalf("%s: have %v, want %v", what, have, want)
		}
	}
	// Before any association; the device need not be enrolled yet.
	has, err := s.HasCertHash(dev.Request(), h1)
	check("HasCertHash before associating", has, err, false)
	has, err = s.HasCertHash(&mdm.Request{Context: context.Background()}, h1)
	check("HasCertHash of a request naming no enrollment, before associating", has, err, false)
	has, err = s.EnrollmentHasCertHash(dev.Request(), h1)
	check("EnrollmentHasCertHash before associating", has, err, false)
	has, err = s.IsCertHashAssociated(dev.Request(), h1)
	check("IsCertHashAssociated before associating", has, err, false)

	for i := 0; i < 2; i++ {
		if err := s.AssociateCertHash(dev.Request(), h1, notAfter); err != nil {
			t.Fatalf("associating hash (time %d): %v", i+1, err)
		}
	}
	for _, c := range []*Channel{dev, user} {
		has, err = s.HasCertHash(c.Request(), h1)
		check("HasCertHash via "+c.String(), has, err, true)
		has, err = s.EnrollmentHasCertHash(c.Request(), h2)
		check("EnrollmentHasCertHash via "+c.String(), has, err, true)
		has, err = s.IsCertHashAssociated(c.Request(), h1)
		check("IsCertHashAssociated via "+c.String(), has, err, true)
		has, err = s.IsCertHashAssociated(c.Request(), h2)
		check("IsCertHashAssociated of other hash via "+c.String(), has, err, false)
	}
	// A renewed identity adds a hash; both stay associated. Associating
	// through the user channel goes to the device.
	if err := s.AssociateCertHash(user.Request(), h2, notAfter); err != nil {
		t.Fatalf("associating second hash: %v", err)
	}
	for _, h := range []string{h1, h2} {
		has, err = s.IsCertHashAssociated(dev.Request(), h)
		check("IsCertHashAssociated of "+h, has, err, true)
	}

	has, err = s.HasCertHash(other.Request(), h2)
	check("HasCertHash from another device", has, err, true)
	has, err = s.EnrollmentHasCertHash(other.Request(), h1)
	check("EnrollmentHasCertHash of another device", has, err, false)
	has, err = s.IsCertHashAssociated(other.Request(), h1)
	check("IsCertHashAssociated with another device", has, err, false)
	has, err = s.HasCertHash(other.Request(), randomHash())
	check("HasCertHash of unknown hash", has, err, false)
	has, err = s.HasCertHash(&mdm.Request{Context: context.Background()}, h1)
	check("HasCertHash of a request naming no enrollment", has, err, true)
}
