package enroll_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"testing"

	"github.com/groob/plist"
	"github.com/smallstep/pkcs7"

	"github.com/nanomdm/nanomdm/http/enroll"
	"github.com/nanomdm/nanomdm/mdm/simulator"
)

// counter hands out numbered challenges, like one-time ones.
type counter struct{ n int }

func (c *counter) ForProfile(context.Context) (string, error) {
	c.n++
	return fmt.Sprintf("one-time-%d", c.n), nil
}

type topics []string

func (t topics) RetrievePushCertTopics(context.Context) ([]string, error) { return t, nil }

func scepConfig() enroll.Config {
	return enroll.Config{
		ServerURL:   "https://mdm.example.com/mdm",
		SignMessage: true,
		SCEP:        &enroll.SCEP{URL: "https://mdm.example.com/scep"},
	}
}

func get(t *testing.T, h http.Handler, target string) (*httptest.ResponseRecorder, map[string]any) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
	if rec.Code != http.StatusOK {
		return rec, nil
	}
	var m map[string]any
	if err := plist.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("profile is not a plist: %v\n%s", err, rec.Body.String())
	}
	return rec, m
}

// payloads returns the profile's payloads by PayloadType, the profile
// itself under "Configuration".
func payloads(t *testing.T, profile map[string]any) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{"Configuration": profile}
	content, _ := profile["PayloadContent"].([]any)
	for _, c := range content {
		p, _ := c.(map[string]any)
		typ, _ := p["PayloadType"].(string)
		out[typ] = p
	}
	return out
}

func readProfile(t *testing.T, path string) map[string]map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := plist.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return payloads(t, m)
}

// TestProfileMatchesExamples compares the generated profile with two
// hand-written enrollment profiles known to enroll devices (the
// MicroMDM-style example of testdata/ and docs/enroll.mobileconfig):
// every key they set is set, with a value of the same kind, and the
// generated profile sets no key neither of them knows. Apple's profile
// payload schemas are not among the files we have; the check-in and
// command schemas the server speaks are checked in docs/.
func TestProfileMatchesExamples(t *testing.T) {
	t.Parallel()
	cfg := scepConfig()
	cfg.CheckInURL = "https://mdm.example.com/checkin"
	cfg.Topic = "com.apple.mgmt.External.test"
	h, err := enroll.Handler(cfg, enroll.WithChallenges(&counter{}))
	if err != nil {
		t.Fatal(err)
	}
	rec, profile := get(t, h, "/mdm/enroll")
	if ct := rec.Header().Get("Content-Type"); ct != enroll.ContentType {
		t.Errorf("Content-Type: have %q, want %q", ct, enroll.ContentType)
	}
	have := payloads(t, profile)
	examples := []map[string]map[string]any{
		readProfile(t, "testdata/example.mobileconfig"),
		readProfile(t, "../../docs/enroll.mobileconfig"),
	}
	optional := map[string]bool{"PayloadOrganization": true}
	for _, typ := range []string{"Configuration", "com.apple.mdm", "com.apple.security.scep"} {
		known := map[string]bool{}
		for i, ex := range examples {
			for _, scope := range []string{"", "PayloadContent"} {
				exP, haveP := ex[typ], have[typ]
				if scope != "" {
					if typ != "com.apple.security.scep" {
						continue
					}
					exP, _ = exP[scope].(map[string]any)
					haveP, _ = haveP[scope].(map[string]any)
				}
				for k, v := range exP {
					known[scope+"/"+k] = true
					if optional[k] || (typ == "Configuration" && k == "PayloadContent") {
						continue
					}
					hv, ok := haveP[k]
					if !ok {
						t.Errorf("%s %s: example %d sets %q, the generated profile does not", typ, scope, i, k)
					} else if reflect.TypeOf(hv) != reflect.TypeOf(v) {
						t.Errorf("%s %s %q: have a %T, example %d has a %T", typ, scope, k, hv, i, v)
					}
				}
			}
		}
		for k := range have[typ] {
			if !known["/"+k] {
				t.Errorf("%s: the generated profile sets %q, which no example knows", typ, k)
			}
		}
	}

	mdmP := have["com.apple.mdm"]
	for k, want := range map[string]any{
		"ServerURL": "https://mdm.example.com/mdm", "CheckInURL": "https://mdm.example.com/checkin",
		"Topic": "com.apple.mgmt.External.test", "SignMessage": true, "AccessRights": uint64(enroll.AccessRights),
		"IdentityCertificateUUID": have["com.apple.security.scep"]["PayloadUUID"],
		"ServerCapabilities":      []any{"com.apple.mdm.per-user-connections", "com.apple.mdm.bootstraptoken"},
	} {
		if !reflect.DeepEqual(mdmP[k], want) {
			t.Errorf("MDM payload %s: have %#v, want %#v", k, mdmP[k], want)
		}
	}
}

// TestProfilePerDownload: every download has fresh PayloadUUIDs and its
// own one-time challenge, and the same PayloadIdentifiers.
func TestProfilePerDownload(t *testing.T) {
	t.Parallel()
	h, err := enroll.Handler(scepConfig(), enroll.WithChallenges(&counter{}), enroll.WithTopics(topics{"com.apple.mgmt.External.stored"}))
	if err != nil {
		t.Fatal(err)
	}
	uuid := regexp.MustCompile(`^[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$`)
	seenUUIDs := map[string]bool{}
	var ids []string
	for i := 1; i <= 3; i++ {
		_, profile := get(t, h, "/mdm/enroll")
		var theseIDs []string
		for typ, p := range payloads(t, profile) {
			u, _ := p["PayloadUUID"].(string)
			if !uuid.MatchString(u) || seenUUIDs[u] {
				t.Errorf("download %d, %s: PayloadUUID %q is not a fresh upper-case UUID", i, typ, u)
			}
			seenUUIDs[u] = true
			id, _ := p["PayloadIdentifier"].(string)
			theseIDs = append(theseIDs, id)
		}
		sort.Strings(theseIDs)
		if ids == nil {
			ids = theseIDs
		} else if !slices.Equal(ids, theseIDs) {
			t.Errorf("download %d: identifiers %v, first download %v", i, theseIDs, ids)
		}
		p := payloads(t, profile)
		if c := p["com.apple.security.scep"]["PayloadContent"].(map[string]any)["Challenge"]; c != fmt.Sprintf("one-time-%d", i) {
			t.Errorf("download %d: challenge %v, want its own", i, c)
		}
		if topic := p["com.apple.mdm"]["Topic"]; topic != "com.apple.mgmt.External.stored" {
			t.Errorf("topic from storage: have %v", topic)
		}
	}
	want := []string{"com.example.mdm.enroll", "com.example.mdm.enroll.identity", "com.example.mdm.enroll.mdm"}
	if !slices.Equal(ids, want) {
		t.Errorf("identifiers: have %v, want %v", ids, want)
	}
}

func TestProfileTopicAndToken(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		topics topics
		target string
		want   int
	}{
		{"no push certificate", nil, "/mdm/enroll?token=t", http.StatusServiceUnavailable},
		{"two push certificates", topics{"a", "b"}, "/mdm/enroll?token=t", http.StatusServiceUnavailable},
		{"no token", topics{"a"}, "/mdm/enroll", http.StatusForbidden},
		{"wrong token", topics{"a"}, "/mdm/enroll?token=u", http.StatusForbidden},
		{"token", topics{"a"}, "/mdm/enroll?token=t", http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := enroll.Handler(scepConfig(), enroll.WithChallenges(&counter{}), enroll.WithTopics(tc.topics), enroll.WithToken("t"))
			if err != nil {
				t.Fatal(err)
			}
			if rec, _ := get(t, h, tc.target); rec.Code != tc.want {
				t.Errorf("have %d, want %d", rec.Code, tc.want)
			}
		})
	}
}

// TestProfileACMEAndRoot: the ACME identity payload and the root CA
// payload, in a signed profile.
func TestProfileACMEAndRoot(t *testing.T) {
	t.Parallel()
	ca, err := simulator.NewCA("root")
	if err != nil {
		t.Fatal(err)
	}
	cfg := scepConfig()
	cfg.SCEP, cfg.Topic, cfg.RootCA = nil, "com.apple.mgmt.External.t", ca.Cert
	cfg.ACME = &enroll.ACME{DirectoryURL: "https://acme.example.com/directory", HardwareBound: true, Attest: true}
	h, err := enroll.Handler(cfg, enroll.WithSigner(ca.Cert, ca.Key, nil))
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/mdm/enroll", nil))
	p7, err := pkcs7.Parse(rec.Body.Bytes())
	if err != nil {
		t.Fatalf("signed profile: %v", err)
	}
	if err := p7.Verify(); err != nil {
		t.Errorf("signature: %v", err)
	}
	var profile map[string]any
	if err := plist.Unmarshal(p7.Content, &profile); err != nil {
		t.Fatal(err)
	}
	p := payloads(t, profile)
	acme := p["com.apple.security.acme"]
	for k, want := range map[string]any{
		"DirectoryURL": "https://acme.example.com/directory", "KeyType": "ECSECPrimeRandom", "KeySize": uint64(384),
		"HardwareBound": true, "Attest": true,
	} {
		if !reflect.DeepEqual(acme[k], want) {
			t.Errorf("ACME %s: have %#v, want %#v", k, acme[k], want)
		}
	}
	if id, _ := acme["ClientIdentifier"].(string); id == "" {
		t.Error("ACME payload without ClientIdentifier")
	}
	if p["com.apple.mdm"]["IdentityCertificateUUID"] != acme["PayloadUUID"] {
		t.Error("IdentityCertificateUUID does not name the ACME payload")
	}
	root, _ := p["com.apple.security.root"]["PayloadContent"].([]byte)
	if cert, err := x509.ParseCertificate(root); err != nil || !cert.Equal(ca.Cert) {
		t.Errorf("root payload: %v", err)
	}
}

func TestHandlerRefusesConfig(t *testing.T) {
	t.Parallel()
	both := scepConfig()
	both.ACME = &enroll.ACME{DirectoryURL: "https://acme.example.com"}
	for name, tc := range map[string]struct {
		cfg  enroll.Config
		opts []enroll.Option
	}{
		"no identity":     {enroll.Config{ServerURL: "https://x/mdm", Topic: "t"}, nil},
		"two identities":  {both, []enroll.Option{enroll.WithChallenges(&counter{})}},
		"no challenge":    {scepConfig(), []enroll.Option{enroll.WithTopics(topics{})}},
		"no topic source": {scepConfig(), []enroll.Option{enroll.WithChallenges(&counter{})}},
	} {
		if _, err := enroll.Handler(tc.cfg, tc.opts...); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
