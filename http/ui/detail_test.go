package ui

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/storage/storagetest"
)

// identityCert returns a self-signed identity certificate named cn,
// valid until notAfter.
func identityCert(t *testing.T, cn string, notAfter time.Time) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     notAfter,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// TestEnrollmentDetail: the enrollment page shows the identity
// certificate and the recent results, device-supplied text escaped.
func TestEnrollmentDetail(t *testing.T) {
	f := newFixture(t)
	s := f.session()
	page := func() string {
		t.Helper()
		w := f.do(http.MethodGet, enrollmentURL(f.dev.ID()), s, nil, "")
		if w.Code != http.StatusOK {
			t.Fatalf("enrollment page: have %d, want 200", w.Code)
		}
		return w.Body.String()
	}
	if body := page(); !strings.Contains(body, "none stored") || !strings.Contains(body, "No command results stored") {
		t.Errorf("enrollment without certificate or results: page lacks the empty states")
	}

	f.dev.Certificate = identityCert(t, hostile, f.now.Add(10*24*time.Hour))
	f.dev.Enroll(t, f.store)
	acked, notNow := storagetest.NewCommand(t, "DeviceInformation"), storagetest.NewCommand(t, "ProfileList")
	storagetest.Enqueue(t, f.store, acked, f.dev)
	storagetest.Enqueue(t, f.store, notNow, f.dev)
	storagetest.StoreReport(t, f.store, f.dev, mdm.StatusAcknowledged, acked.CommandUUID)
	storagetest.StoreReport(t, f.store, f.dev, mdm.StatusNotNow, notNow.CommandUUID)
	body := page()
	for _, want := range []string{
		"&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;", // the subject, escaped
		"expires within 30 days",
		acked.CommandUUID, "DeviceInformation", "Acknowledged",
		notNow.CommandUUID, `<pre class="plist">&lt;plist`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("enrollment page lacks %q", want)
		}
	}
	if strings.Contains(body, "<script>alert") {
		t.Errorf("enrollment page holds the raw certificate subject")
	}
	if i, j := strings.Index(body, `<summary><span class="status s-notnow`), strings.Index(body, `<summary><span class="status s-acknowledged`); i < 0 || j < 0 || i > j {
		t.Errorf("recent results not newest first (NotNow at %d, Acknowledged at %d)", i, j)
	}
}

// TestRemoveQueued: a queued command's button takes it off the queue,
// with a CSRF token; removing it again says it is no longer queued.
func TestRemoveQueued(t *testing.T) {
	f := newFixture(t)
	s := f.session()
	token := f.csrf(s)
	gone, kept := storagetest.NewCommand(t, "ProfileList"), storagetest.NewCommand(t, "SecurityInfo")
	storagetest.Enqueue(t, f.store, gone, f.dev)
	storagetest.Enqueue(t, f.store, kept, f.dev)
	target := enrollmentURL(f.dev.ID()) + "/queue/" + url.PathEscape(gone.CommandUUID) + "/remove"
	if body := f.do(http.MethodGet, enrollmentURL(f.dev.ID()), s, nil, "").Body.String(); !strings.Contains(body, `action="`+target+`"`) {
		t.Fatalf("enrollment page has no remove button posting to %s", target)
	}
	if w := f.post(target, s, url.Values{"csrf": {"wrong"}}); w.Code != http.StatusForbidden {
		t.Errorf("remove with a wrong token: have %d, want 403", w.Code)
	}
	storagetest.WantNext(t, f.store, f.dev, false, gone)

	w := f.post(target, s, url.Values{"csrf": {token}})
	if loc := w.Header().Get("Location"); w.Code != http.StatusSeeOther || !strings.Contains(loc, "done=removed") {
		t.Fatalf("remove: have %d to %q, want 303 back to the enrollment", w.Code, loc)
	}
	storagetest.WantNext(t, f.store, f.dev, false, kept)
	if body := f.do(http.MethodGet, w.Header().Get("Location"), s, nil, "").Body.String(); !strings.Contains(body, "Removed "+gone.CommandUUID+" from the queue.") {
		t.Errorf("after removing: page lacks the note")
	}
	w = f.post(target, s, url.Values{"csrf": {token}})
	if w.Code != http.StatusNotFound || !strings.Contains(w.Body.String(), "is no longer queued") {
		t.Errorf("removing again: have %d, want 404 saying it is no longer queued", w.Code)
	}
	storagetest.WantNext(t, f.store, f.dev, false, kept)
}

// TestPushCertList: the push certificate page lists every stored
// certificate, warns within 30 days of expiry and for a topic in use
// without one.
func TestPushCertList(t *testing.T) {
	f := newFixture(t)
	s := f.session()
	page := func(target string) string {
		t.Helper()
		w := f.do(http.MethodGet, target, s, nil, "")
		if w.Code != http.StatusOK {
			t.Fatalf("%s: have %d, want 200", target, w.Code)
		}
		return w.Body.String()
	}
	for _, target := range []string{"/ui/pushcert", "/ui/"} {
		if body := page(target); !strings.Contains(body, "No push certificate is stored for <b>"+f.dev.Topic) {
			t.Errorf("%s: no warning for the enrolled topic without a certificate", target)
		}
	}
	unused := storagetest.NewTopic()
	for _, topic := range []string{unused, f.dev.Topic} {
		certPEM, keyPEM := storagetest.NewPushCert(t, topic)
		if err := f.store.StorePushCert(t.Context(), certPEM, keyPEM); err != nil {
			t.Fatal(err)
		}
	}
	body := page("/ui/pushcert")
	if !strings.Contains(body, unused) || !strings.Contains(body, "APSP:"+unused) {
		t.Errorf("push certificate page does not list the stored certificate of %s, which no enrollment uses", unused)
	}
	if strings.Contains(body, `class="flash`) {
		t.Errorf("push certificate page warns with every certificate valid for a year")
	}
	f.now = f.now.Add(350 * 24 * time.Hour)
	s = f.session() // the old session has expired
	for _, target := range []string{"/ui/pushcert", "/ui/"} {
		if body := page(target); strings.Count(body, `<p class="flash warn" role="alert">The push certificate for`) != 2 {
			t.Errorf("%s: want a warning for each of the two certificates 15 days before expiry", target)
		}
	}
	f.now = f.now.Add(30 * 24 * time.Hour)
	s = f.session()
	if body := page("/ui/pushcert"); !strings.Contains(body, "The push certificate for <b>"+f.dev.Topic+"</b> expired") {
		t.Errorf("push certificate page does not say the certificate expired")
	}
}
