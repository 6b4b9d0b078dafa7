package ui

import (
	"bytes"
	"context"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	mdmhttp "github.com/nanomdm/nanomdm/http"
	"github.com/nanomdm/nanomdm/http/api"
	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/push"
	"github.com/nanomdm/nanomdm/storage/inmem"
	"github.com/nanomdm/nanomdm/storage/storagetest"
)

const testKey = "console-test-key"

// hostile is device-supplied text that is markup.
const hostile = `<script>alert("x")</script><img src=x onerror=alert(1)>`

// fakePusher answers every push with an apns-id.
type fakePusher struct{ pushed []string }

func (p *fakePusher) Push(_ context.Context, ids []string) (map[string]*push.Response, error) {
	out := map[string]*push.Response{}
	for _, id := range ids {
		p.pushed = append(p.pushed, id)
		out[id] = &push.Response{ID: "apns-" + id}
	}
	return out, nil
}

type fixture struct {
	t       *testing.T
	store   *inmem.Storage
	console *Console
	limiter *mdmhttp.AuthFailureLimiter
	pusher  *fakePusher
	now     time.Time
	dev     *storagetest.Channel
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{t: t, store: inmem.New(), pusher: &fakePusher{}, now: time.Now()}
	f.limiter = mdmhttp.NewAuthFailureLimiter(3, time.Minute)
	opts := []api.Option{api.WithPusher(f.pusher)}
	actions := Actions{
		Enqueue:  api.EnqueueHandler(f.store, opts...),
		Push:     api.PushHandler(opts...),
		Queue:    api.QueueHandler(f.store, opts...),
		Remove:   api.RemoveQueuedCommandHandler(f.store, opts...),
		PushCert: api.PushCertHandler(f.store, opts...),
	}
	f.console = New(f.store, testKey, actions, WithAuthFailureLimiter(f.limiter),
		WithServerInfo("test", "inmem"), withClock(func() time.Time { return f.now }))
	f.dev = storagetest.NewDevice(t)
	f.dev.SerialNumber = hostile
	f.dev.Enroll(t, f.store)
	return f
}

// do serves one request; cookie, if set, is the session cookie value.
func (f *fixture) do(method, target, cookie string, body io.Reader, contentType string) *httptest.ResponseRecorder {
	f.t.Helper()
	r := httptest.NewRequest(method, target, body)
	r.RemoteAddr = "192.0.2.1:1234"
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	if cookie != "" {
		r.AddCookie(&http.Cookie{Name: SessionCookie, Value: cookie})
	}
	w := httptest.NewRecorder()
	f.console.ServeHTTP(w, r)
	return w
}

func (f *fixture) login(key string) *httptest.ResponseRecorder {
	f.t.Helper()
	return f.do(http.MethodPost, "/ui/login", "", strings.NewReader(url.Values{"key": {key}, "next": {"/ui/enrollments"}}.Encode()),
		"application/x-www-form-urlencoded")
}

// session signs in and returns the session cookie value.
func (f *fixture) session() string {
	f.t.Helper()
	w := f.login(testKey)
	for _, c := range w.Result().Cookies() {
		if c.Name == SessionCookie {
			return c.Value
		}
	}
	f.t.Fatalf("sign-in set no session cookie: %d %s", w.Code, w.Body)
	return ""
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf reads the CSRF token of a page.
func (f *fixture) csrf(cookie string) string {
	f.t.Helper()
	w := f.do(http.MethodGet, enrollmentURL(f.dev.ID()), cookie, nil, "")
	m := csrfRe.FindStringSubmatch(w.Body.String())
	if m == nil {
		f.t.Fatalf("no CSRF token on the enrollment page: %d %s", w.Code, w.Body)
	}
	return m[1]
}

func (f *fixture) post(target, cookie string, form url.Values) *httptest.ResponseRecorder {
	f.t.Helper()
	return f.do(http.MethodPost, target, cookie, strings.NewReader(form.Encode()), "application/x-www-form-urlencoded")
}

func TestSignIn(t *testing.T) {
	f := newFixture(t)

	w := f.do(http.MethodGet, "/ui/enrollments?type=Device", "", nil, "")
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/ui/login?next=%2Fui%2Fenrollments%3Ftype%3DDevice" {
		t.Errorf("signed out: have %d to %q, want 303 to the sign-in page", w.Code, w.Header().Get("Location"))
	}
	if w := f.login("wrong"); w.Code != http.StatusUnauthorized || len(w.Result().Cookies()) != 0 {
		t.Errorf("wrong key: have %d with cookies %v, want 401 and none", w.Code, w.Result().Cookies())
	}

	w = f.login(testKey)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/ui/enrollments" {
		t.Errorf("sign-in: have %d to %q, want 303 to the page asked for", w.Code, w.Header().Get("Location"))
	}
	c := w.Result().Cookies()[0]
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Secure || c.Path != "/ui/" || c.MaxAge != int(DefaultSessionLifetime/time.Second) {
		t.Errorf("session cookie over plain HTTP: have %+v, want HttpOnly, SameSite=Strict, not Secure, Path /ui/, Max-Age %v", c, DefaultSessionLifetime)
	}
	if w := f.do(http.MethodGet, "/ui/", c.Value, nil, ""); w.Code != http.StatusOK {
		t.Errorf("signed in: have %d, want 200", w.Code)
	}

	// Behind a TLS proxy the cookie is Secure.
	r := httptest.NewRequest(http.MethodPost, "/ui/login", strings.NewReader("key="+testKey))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("X-Forwarded-Proto", "https")
	rec := httptest.NewRecorder()
	f.console.ServeHTTP(rec, r)
	if cs := rec.Result().Cookies(); len(cs) != 1 || !cs[0].Secure {
		t.Errorf("session cookie behind TLS: have %v, want Secure", cs)
	}

	// Tampered, foreign and expired sessions are not sessions.
	other := newAuthKey("another key").newSession(f.now.Add(time.Hour))
	for name, v := range map[string]string{
		"tampered": c.Value[:len(c.Value)-2] + "AA",
		"foreign":  other,
		"garbage":  "x.y",
	} {
		if w := f.do(http.MethodGet, "/ui/", v, nil, ""); w.Code != http.StatusSeeOther {
			t.Errorf("%s session: have %d, want 303 to sign in", name, w.Code)
		}
	}
	f.now = f.now.Add(DefaultSessionLifetime + time.Second)
	if w := f.do(http.MethodGet, "/ui/", c.Value, nil, ""); w.Code != http.StatusSeeOther {
		t.Errorf("expired session: have %d, want 303 to sign in", w.Code)
	}

	// Signing out deletes the cookie.
	f.now = time.Now()
	s := f.session()
	w = f.post("/ui/logout", s, url.Values{"csrf": {f.csrf(s)}})
	if cs := w.Result().Cookies(); w.Code != http.StatusSeeOther || len(cs) != 1 || cs[0].MaxAge >= 0 {
		t.Errorf("sign-out: have %d with %v, want 303 deleting the cookie", w.Code, cs)
	}
}

func TestBasicAuthAndLockOut(t *testing.T) {
	f := newFixture(t)
	basic := func(pass string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, "/ui/enrollments", nil)
		r.RemoteAddr = "192.0.2.1:1234"
		r.SetBasicAuth(mdmhttp.APIUsername, pass)
		w := httptest.NewRecorder()
		f.console.ServeHTTP(w, r)
		return w
	}
	if w := basic(testKey); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), f.dev.ID()) {
		t.Errorf("Basic auth: have %d, want 200 with the enrollment", w.Code)
	}
	if w := basic("wrong"); w.Code != http.StatusUnauthorized || w.Header().Get("WWW-Authenticate") == "" {
		t.Errorf("wrong Basic auth: have %d %v, want 401 with a challenge", w.Code, w.Header())
	}
	// Failures of the form and of Basic auth count in the API's limiter:
	// after three, the right key is refused too, on the API as well.
	f.login("wrong")
	f.login("wrong")
	if w := f.login(testKey); w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
		t.Errorf("sign-in after 3 failures: have %d, want 429 with Retry-After", w.Code)
	}
	if w := basic(testKey); w.Code != http.StatusTooManyRequests {
		t.Errorf("Basic auth after 3 failures: have %d, want 429", w.Code)
	}
	apiRoute := mdmhttp.BasicAuthMiddleware(http.NotFoundHandler(), mdmhttp.APIUsername, testKey, "nanomdm", mdmhttp.WithAuthFailureLimiter(f.limiter))
	r := httptest.NewRequest(http.MethodGet, "/v1/enrollments", nil)
	r.RemoteAddr = "192.0.2.1:999"
	r.SetBasicAuth(mdmhttp.APIUsername, testKey)
	w := httptest.NewRecorder()
	apiRoute.ServeHTTP(w, r)
	if w.Code != http.StatusTooManyRequests {
		t.Errorf("API after 3 console failures: have %d, want 429", w.Code)
	}
}

func TestCSRF(t *testing.T) {
	f := newFixture(t)
	s := f.session()
	token := f.csrf(s)
	other := f.session()
	pushURL := enrollmentURL(f.dev.ID()) + "/push"
	for _, tc := range []struct {
		name  string
		token string
	}{
		{"none", ""},
		{"wrong", "AAAA"},
		{"another session's", f.csrf(other)},
		{"Basic auth's", newAuthKey(testKey).csrfToken(string(basicIdentity))},
	} {
		if w := f.post(pushURL, s, url.Values{"csrf": {tc.token}}); w.Code != http.StatusForbidden {
			t.Errorf("%s token: have %d, want 403", tc.name, w.Code)
		}
	}
	if len(f.pusher.pushed) != 0 {
		t.Fatalf("pushed %v without a valid token", f.pusher.pushed)
	}
	w := f.post(pushURL, s, url.Values{"csrf": {token}})
	if w.Code != http.StatusSeeOther || len(f.pusher.pushed) != 1 {
		t.Errorf("valid token: have %d, pushed %v; want 303 and one push", w.Code, f.pusher.pushed)
	}
	// A signed-out POST is refused, not redirected.
	if w := f.post(pushURL, "", url.Values{"csrf": {token}}); w.Code != http.StatusUnauthorized {
		t.Errorf("signed-out POST: have %d, want 401", w.Code)
	}
}

// TestEscaping shows device-supplied markup as text on every page.
func TestEscaping(t *testing.T) {
	f := newFixture(t)
	ipad := f.dev.NewSharediPadUser(t)
	ipad.Enrollment.UserShortName = `"><svg onload=alert(1)>`
	id, err := ipad.Enrollment.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	ipad.EnrollID = id
	ipad.Enroll(t, f.store)
	cmd := storagetest.NewCommand(t, "DeviceInformation")
	storagetest.Enqueue(t, f.store, cmd, f.dev)
	raw := []byte(`<?xml version="1.0" encoding="UTF-8"?><plist version="1.0"><dict>` +
		`<key>UDID</key><string>` + f.dev.Enrollment.UDID + `</string>` +
		`<key>Status</key><string>Acknowledged</string>` +
		`<key>CommandUUID</key><string>` + cmd.CommandUUID + `</string>` +
		`<key>QueryResponses</key><dict><key>DeviceName</key><string>&lt;script&gt;alert(2)&lt;/script&gt;</string></dict>` +
		`</dict></plist>`)
	rep, err := mdm.DecodeCommandResults(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.store.StoreCommandReport(f.dev.Request(), rep); err != nil {
		t.Fatal(err)
	}
	s := f.session()
	for _, target := range []string{
		"/ui/enrollments",
		"/ui/enrollments?q=" + url.QueryEscape(hostile),
		enrollmentURL(f.dev.ID()),
		enrollmentURL(ipad.ID()),
		"/ui/commands/" + cmd.CommandUUID + "?id=" + url.QueryEscape(hostile),
		"/ui/pushcert?topic=" + url.QueryEscape(hostile),
	} {
		w := f.do(http.MethodGet, target, s, nil, "")
		body := w.Body.String()
		if w.Code != http.StatusOK {
			t.Errorf("%s: have %d, want 200", target, w.Code)
		}
		for _, bad := range []string{"<script>alert", "<img src=x", "<svg onload", `"><svg`} {
			if strings.Contains(body, bad) {
				t.Errorf("%s: page holds raw device markup %q", target, bad)
			}
		}
	}
	w := f.do(http.MethodGet, enrollmentURL(ipad.ID()), s, nil, "")
	if !strings.Contains(w.Body.String(), "&#34;&gt;&lt;svg onload=alert(1)&gt;") {
		t.Errorf("the hostile user channel ID is not shown escaped:\n%s", w.Body)
	}
	for _, target := range []string{"/ui/commands/" + cmd.CommandUUID, enrollmentURL(f.dev.ID())} {
		w = f.do(http.MethodGet, target, s, nil, "")
		if !strings.Contains(w.Body.String(), "&amp;lt;script&amp;gt;alert(2)") {
			t.Errorf("%s: the result plist is not shown escaped:\n%s", target, w.Body)
		}
	}
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("Content-Security-Policy %q does not keep inline script out", csp)
	}
}

// multipartForm encodes fields and files as a multipart form.
func multipartForm(t *testing.T, fields map[string]string, files map[string][]byte) (io.Reader, string) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for k, v := range fields {
		mw.WriteField(k, v)
	}
	for k, v := range files {
		fw, err := mw.CreateFormFile(k, k+".pem")
		if err != nil {
			t.Fatal(err)
		}
		fw.Write(v)
	}
	mw.Close()
	return &b, mw.FormDataContentType()
}

func TestSendCommand(t *testing.T) {
	f := newFixture(t)
	s := f.session()
	token := f.csrf(s)
	target := enrollmentURL(f.dev.ID()) + "/commands"
	queue := func() []string {
		q, err := f.store.RetrieveQueue(context.Background(), f.dev.ID(), "", 10)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, c := range q {
			out = append(out, c.RequestType)
		}
		return out
	}

	// From a template, pushed.
	body, ct := multipartForm(t, map[string]string{"csrf": token, "mode": "template", "template": "DeviceInformation",
		"p_queries": "UDID, DeviceName", "push": "1"}, nil)
	w := f.do(http.MethodPost, target, s, body, ct)
	if w.Code != http.StatusSeeOther || !strings.Contains(w.Header().Get("Location"), "?sent=") {
		t.Fatalf("template: have %d to %q, want 303 to ?sent=", w.Code, w.Header().Get("Location"))
	}
	if have := queue(); strings.Join(have, ",") != "DeviceInformation" || len(f.pusher.pushed) != 1 {
		t.Errorf("after template: queue %v, pushed %v; want DeviceInformation and one push", have, f.pusher.pushed)
	}

	// A raw plist, not pushed.
	cmd := storagetest.NewCommand(t, "ProfileList")
	w = f.post(target, s, url.Values{"csrf": {token}, "mode": {"raw"}, "plist": {string(cmd.Raw)}})
	if w.Code != http.StatusSeeOther || strings.Join(queue(), ",") != "DeviceInformation,ProfileList" || len(f.pusher.pushed) != 1 {
		t.Errorf("raw: have %d, queue %v, pushed %v", w.Code, queue(), f.pusher.pushed)
	}

	// The API's rules answer: a bad plist, a duplicate UUID, a bad parameter.
	for _, tc := range []struct {
		name string
		form url.Values
		code int
		want string
	}{
		{"bad plist", url.Values{"mode": {"raw"}, "plist": {"<plist>nope"}}, http.StatusBadRequest, "plist"},
		{"duplicate", url.Values{"mode": {"raw"}, "plist": {string(cmd.Raw)}}, http.StatusConflict, "already exists"},
		{"empty", url.Values{"mode": {"raw"}}, http.StatusBadRequest, "paste a command plist"},
		{"unknown template", url.Values{"template": {"NoSuch"}}, http.StatusBadRequest, "choose a command template"},
		{"bad parameter", url.Values{"template": {"Settings"}}, http.StatusBadRequest, "at least one setting"},
	} {
		tc.form.Set("csrf", token)
		w := f.post(target, s, tc.form)
		if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.want) {
			t.Errorf("%s: have %d, want %d with %q", tc.name, w.Code, tc.code, tc.want)
		}
	}

	// Clearing the queue.
	w = f.post(enrollmentURL(f.dev.ID())+"/queue/clear", s, url.Values{"csrf": {token}})
	if w.Code != http.StatusSeeOther || len(queue()) != 0 {
		t.Errorf("clear: have %d, queue %v; want 303 and empty", w.Code, queue())
	}
	if w := f.post("/ui/enrollments/no-such-device/push", s, url.Values{"csrf": {token}}); w.Code != http.StatusNotFound {
		t.Errorf("push to unknown enrollment: have %d, want 404", w.Code)
	}
}

func TestUploadPushCert(t *testing.T) {
	f := newFixture(t)
	s := f.session()
	token := f.csrf(s)
	certPEM, keyPEM := storagetest.NewPushCert(t, f.dev.Topic)

	body, ct := multipartForm(t, map[string]string{"csrf": token}, map[string][]byte{"cert": certPEM, "key": keyPEM})
	w := f.do(http.MethodPost, "/ui/pushcert", s, body, ct)
	if w.Code != http.StatusSeeOther || !strings.Contains(w.Header().Get("Location"), url.QueryEscape(f.dev.Topic)) {
		t.Fatalf("upload: have %d to %q: %s", w.Code, w.Header().Get("Location"), w.Body)
	}
	w = f.do(http.MethodGet, w.Header().Get("Location"), s, nil, "")
	if !strings.Contains(w.Body.String(), "Stored the push certificate") || !strings.Contains(w.Body.String(), "valid") {
		t.Errorf("after upload: page lacks the stored certificate:\n%s", w.Body)
	}
	if w := f.do(http.MethodGet, "/ui/", s, nil, ""); strings.Contains(w.Body.String(), "no certificate stored") {
		t.Errorf("overview still says no certificate for %s", f.dev.Topic)
	}

	// The API's checks answer a bad upload; an oversized one is refused.
	body, ct = multipartForm(t, map[string]string{"csrf": token}, map[string][]byte{"cert": certPEM})
	if w := f.do(http.MethodPost, "/ui/pushcert", s, body, ct); w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "no PEM private key") {
		t.Errorf("certificate without key: have %d, want 400 naming the missing key", w.Code)
	}
	body, ct = multipartForm(t, map[string]string{"csrf": token}, map[string][]byte{"cert": bytes.Repeat([]byte("A"), api.MaxPushCertBytes+1)})
	if w := f.do(http.MethodPost, "/ui/pushcert", s, body, ct); w.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized certificate: have %d, want 413", w.Code)
	}
	f.console.bodyLimit = 1 << 10
	body, ct = multipartForm(t, map[string]string{"csrf": token}, map[string][]byte{"cert": bytes.Repeat([]byte("A"), 4<<10)})
	if w := f.do(http.MethodPost, "/ui/pushcert", s, body, ct); w.Code != http.StatusRequestEntityTooLarge && w.Code != http.StatusForbidden {
		t.Errorf("form above the body limit: have %d, want 413 (or 403: the token lies past the limit)", w.Code)
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"/ui/enrollments?q=1": "/ui/enrollments?q=1",
		"":                    "/ui/",
		"https://evil.test/":  "/ui/",
		"//evil.test/ui/":     "/ui/",
		"/ui/\\evil":          "/ui/",
		"/v1/enrollments":     "/ui/",
	} {
		if have := safeNext(in); have != want {
			t.Errorf("safeNext(%q): have %q, want %q", in, have, want)
		}
	}
}

func TestOverviewCounts(t *testing.T) {
	f := newFixture(t)
	user := f.dev.NewUser(t)
	user.Enroll(t, f.store)
	old := storagetest.NewDevice(t)
	old.Enroll(t, f.store)
	if err := f.store.Disable(old.Request()); err != nil {
		t.Fatal(err)
	}
	f.now = f.now.Add(2 * time.Hour) // everything was seen 1 to 24 hours ago
	w := f.do(http.MethodGet, "/ui/", f.session(), nil, "")
	body := w.Body.String()
	for _, want := range []string{
		"<b>3</b><span>enrollments</span>", "<b>2</b><span>enabled</span>", "<b>1</b><span>disabled",
		`1 to 24 hours ago</span><span class="bar"><svg viewBox="0 0 100 10" preserveAspectRatio="none" aria-hidden="true"><rect width="100" height="10"></rect></svg></span><span class="n">2</span>`,
		"no certificate stored", "inmem",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("overview lacks %q", want)
		}
	}
}
