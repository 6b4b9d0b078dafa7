package ui

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"
)

// FuzzForms posts arbitrary bodies, urlencoded and multipart, to the
// console's form handlers with a valid session and token: never a panic
// nor a server error.
func FuzzForms(f *testing.F) {
	f.Add([]byte("mode=raw&plist=%3Cplist%3E"), false, uint8(0))
	f.Add([]byte("template=DeviceInformation&p_queries=UDID"), false, uint8(0))
	f.Add([]byte("--B\r\nContent-Disposition: form-data; name=\"cert\"; filename=\"a\"\r\n\r\n-----BEGIN CERTIFICATE-----\r\n--B--\r\n"), true, uint8(2))
	f.Add([]byte("--B\r\nContent-Disposition: form-data; name=\"mode\"\r\n\r\nraw\r\n--B\r\nContent-Disposition: form-data; name=\"plistfile\"; filename=\"p\"\r\n\r\nbplist00\r\n--B--\r\n"), true, uint8(0))
	fx := newFixture(&testing.T{})
	s := fx.session()
	token := fx.console.key.csrfToken(s)
	targets := []string{enrollmentURL(fx.dev.ID()) + "/commands", enrollmentURL(fx.dev.ID()) + "/push", "/ui/pushcert", "/ui/login"}
	f.Fuzz(func(t *testing.T, body []byte, multi bool, target uint8) {
		fx.t = t
		ct := "application/x-www-form-urlencoded"
		if multi {
			ct = "multipart/form-data; boundary=B"
		}
		r, _ := http.NewRequest(http.MethodPost, targets[int(target)%len(targets)], bytes.NewReader(body))
		r.Header.Set("Content-Type", ct)
		r.Header.Set("X-CSRF-Token", token)
		r.RemoteAddr = "192.0.2.9:1"
		r.AddCookie(&http.Cookie{Name: SessionCookie, Value: s})
		w := &recorder{header: http.Header{}}
		fx.console.ServeHTTP(w, r)
		if w.status >= 500 {
			t.Errorf("POST %s %q: status %d: %s", r.URL.Path, body, w.status, w.body.String())
		}
	})
}

// FuzzPrettyPlist shows any device bytes without panicking.
func FuzzPrettyPlist(f *testing.F) {
	f.Add([]byte(`<?xml version="1.0"?><plist version="1.0"><dict><key>a</key><string>&lt;b&gt;</string></dict></plist>`))
	f.Add([]byte("bplist00\xd1\x01\x02QaQb\x08\x0b\x0d\x00\x00\x00\x00\x00\x00\x01\x01\x00\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x0f"))
	f.Add([]byte{0, 1, 2})
	f.Fuzz(func(t *testing.T, raw []byte) {
		out := prettyPlist(raw)
		if len(raw) > 0 && out == "" {
			t.Errorf("prettyPlist(%q) is empty", raw)
		}
	})
}

// FuzzSession accepts only cookies the key signed.
func FuzzSession(f *testing.F) {
	k := newAuthKey(testKey)
	now := time.Now()
	f.Add(k.newSession(now.Add(time.Hour)))
	f.Add("x.y")
	f.Add("")
	f.Fuzz(func(t *testing.T, v string) {
		if k.validSession(v, now) && !strings.Contains(v, ".") {
			t.Errorf("accepted unsigned session %q", v)
		}
		if newAuthKey("other").validSession(v, now) && k.validSession(v, now) {
			t.Errorf("session %q valid under two keys", v)
		}
	})
}
