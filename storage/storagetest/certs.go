package storagetest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"slices"
	"sync"
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

// testPushCertTopics checks that every stored push certificate is listed
// once, in bytewise order. The store may be shared: only this test's
// topics are looked for.
func testPushCertTopics(t *testing.T, s storage.AllStorage) {
	ctx := context.Background()
	lister := s
	a, b := NewTopic(), NewTopic()
	before, err := lister.RetrievePushCertTopics(ctx)
	if err != nil {
		t.Fatalf("listing push cert topics: %v", err)
	}
	if slices.Contains(before, a) || slices.Contains(before, b) {
		t.Fatalf("topics %v before storing: want neither %q nor %q", before, a, b)
	}
	for _, topic := range []string{b, a, b} {
		pemCert, pemKey := NewPushCert(t, topic)
		if err := s.StorePushCert(ctx, pemCert, pemKey); err != nil {
			t.Fatalf("storing push cert of %q: %v", topic, err)
		}
	}
	topics, err := lister.RetrievePushCertTopics(ctx)
	if err != nil {
		t.Fatalf("listing push cert topics: %v", err)
	}
	if !slices.IsSorted(topics) {
		t.Errorf("topics %v: want bytewise order", topics)
	}
	for _, topic := range []string{a, b} {
		n := 0
		for _, have := range topics {
			if have == topic {
				n++
			}
		}
		if n != 1 {
			t.Errorf("topic %q listed %d times in %v, want once", topic, n, topics)
		}
	}
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

func testCertAuth(t *testing.T, s storage.AllStorage) {
	dev, other := NewDevice(t), NewDevice(t)
	user := dev.NewUser(t)
	h1, h2 := NewCertHash(), NewCertHash()
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
	has, err = s.HasCertHash(other.Request(), NewCertHash())
	check("HasCertHash of unknown hash", has, err, false)
	has, err = s.HasCertHash(&mdm.Request{Context: context.Background()}, h1)
	check("HasCertHash of a request naming no enrollment", has, err, true)

	// A hash of one device is refused for another, which stays unbound.
	if err := s.AssociateCertHash(other.Request(), h1, notAfter); !errors.Is(err, storage.ErrCertHashTaken) {
		t.Errorf("associating another device's hash: have %v, want %v", err, storage.ErrCertHashTaken)
	}
	has, err = s.EnrollmentHasCertHash(other.Request(), h1)
	check("EnrollmentHasCertHash after a refused association", has, err, false)
}

// testCertAuthRace has devices race to bind one new hash: exactly one
// wins, every other gets ErrCertHashTaken and stays unbound.
func testCertAuthRace(t *testing.T, s storage.AllStorage) {
	const racers = 8
	hash := NewCertHash()
	devs := make([]*Channel, racers)
	for i := range devs {
		devs[i] = NewDevice(t)
	}
	errs := make([]error, racers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, d := range devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = s.AssociateCertHash(d.Request(), hash, time.Now().Add(time.Hour))
		}()
	}
	close(start)
	wg.Wait()
	won := 0
	for i, err := range errs {
		bound, berr := s.IsCertHashAssociated(devs[i].Request(), hash)
		switch {
		case berr != nil:
			t.Fatalf("IsCertHashAssociated: %v", berr)
		case err == nil && bound:
			won++
		case errors.Is(err, storage.ErrCertHashTaken) && !bound:
		default:
			t.Errorf("racer %d: have error %v and bound %v; want nil and bound, or %v and unbound", i, err, bound, storage.ErrCertHashTaken)
		}
	}
	if won != 1 {
		t.Errorf("%d devices bound one hash, want exactly 1", won)
	}
}
