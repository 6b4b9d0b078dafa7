package ui

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"net/http"
	"net/url"
	"strings"
	"time"

	mdmhttp "github.com/nanomdm/nanomdm/http"
)

// Sign-in. A session is a signed cookie: expiry and a random nonce,
// with an HMAC keyed by a key derived from the API key. Nothing is kept
// on the server, so sessions survive restarts and work across instances
// that share the API key; changing the key ends every session. Signing
// out deletes the cookie from the browser.
//
// Every POST carries a CSRF token: an HMAC of the session cookie (of the
// constant "basic" for Basic-authenticated requests), so a page of
// another site can neither read nor forge it.

const (
	// SessionCookie names the session cookie.
	SessionCookie = "nanomdm_console"
	// DefaultSessionLifetime is how long a sign-in lasts.
	DefaultSessionLifetime = 8 * time.Hour
	// csrfField names the form field of the CSRF token.
	csrfField = "csrf"
)

// authKey is the HMAC key of sessions and CSRF tokens.
type authKey []byte

func newAuthKey(apiKey string) authKey {
	m := hmac.New(sha256.New, []byte(apiKey))
	m.Write([]byte("nanomdm console session v1"))
	return m.Sum(nil)
}

func (k authKey) mac(parts ...string) []byte {
	m := hmac.New(sha256.New, k)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return m.Sum(nil)
}

var b64 = base64.RawURLEncoding

// newSession returns a session cookie value that expires at exp.
func (k authKey) newSession(exp time.Time) string {
	var b [24]byte
	binary.BigEndian.PutUint64(b[:8], uint64(exp.Unix()))
	rand.Read(b[8:])
	payload := b64.EncodeToString(b[:])
	return payload + "." + b64.EncodeToString(k.mac("session", payload))
}

// validSession reports whether v is a session this key signed that has
// not expired at now.
func (k authKey) validSession(v string, now time.Time) bool {
	payload, sig, ok := strings.Cut(v, ".")
	if !ok || len(v) > 128 {
		return false
	}
	have, err := b64.DecodeString(sig)
	if err != nil || !hmac.Equal(have, k.mac("session", payload)) {
		return false
	}
	b, err := b64.DecodeString(payload)
	if err != nil || len(b) != 24 {
		return false
	}
	return now.Unix() < int64(binary.BigEndian.Uint64(b[:8]))
}

// csrfToken is the token forms carry for the session (or "basic").
func (k authKey) csrfToken(session string) string {
	return b64.EncodeToString(k.mac("csrf", session))
}

func (k authKey) validCSRF(session, token string) bool {
	have, err := b64.DecodeString(token)
	return err == nil && hmac.Equal(have, k.mac("csrf", session))
}

// secure reports whether the browser reached us over TLS, directly or
// through a proxy that says so.
func secure(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

// identity is who a request is: the session cookie value, "basic" for
// Basic auth, or "" when not signed in.
type identity string

const basicIdentity identity = "basic"

// authenticate tells who r is. Wrong Basic credentials count as a failed
// sign-in; a locked-out client is answered 429 (ok false, answered).
func (c *Console) authenticate(w http.ResponseWriter, r *http.Request) (identity, bool) {
	if u, p, ok := r.BasicAuth(); ok {
		if left := c.limiter.LockedOut(r); left > 0 {
			c.locked(w, r, left)
			return "", false
		}
		if !mdmhttp.CredentialsMatch(u, p, mdmhttp.APIUsername, c.apiKey) {
			c.limiter.Failed(r)
			w.Header().Set("WWW-Authenticate", `Basic realm="nanomdm"`)
			c.errorPage(w, r, http.StatusUnauthorized, "Wrong API credentials.")
			return "", false
		}
		c.limiter.Succeeded(r)
		return basicIdentity, true
	}
	if ck, err := r.Cookie(SessionCookie); err == nil && c.key.validSession(ck.Value, c.now()) {
		return identity(ck.Value), true
	}
	return "", true
}

// locked answers a client the limiter has locked out.
func (c *Console) locked(w http.ResponseWriter, r *http.Request, left time.Duration) {
	secs := int((left + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", itoa(max(secs, 1)))
	c.errorPage(w, r, http.StatusTooManyRequests, "Too many failed sign-ins from your address. Try again in "+left.Round(time.Second).String()+".")
}

// requireAuth admits signed-in requests, sends browsers that are not to
// the sign-in page, and checks the CSRF token of every POST.
func (c *Console) requireAuth(next func(w http.ResponseWriter, r *http.Request, p *page)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := c.authenticate(w, r)
		if !ok {
			return
		}
		if id == "" {
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				c.errorPage(w, r, http.StatusUnauthorized, "Your session has ended. Sign in again.")
				return
			}
			http.Redirect(w, r, Prefix+"/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		p := &page{CSRF: c.key.csrfToken(string(id)), Session: id != basicIdentity, Version: c.version}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, c.bodyLimit)
			token := r.Header.Get("X-CSRF-Token")
			if token == "" {
				token = formValue(r, csrfField)
			}
			if !c.key.validCSRF(string(id), token) {
				c.errorPage(w, r, http.StatusForbidden, "The form was too old or did not come from this console (missing or wrong CSRF token). Reload the page and try again.")
				return
			}
		}
		next(w, r, p)
	})
}

// formValue reads a field of a urlencoded or multipart form.
func formValue(r *http.Request, name string) string {
	if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
		if r.MultipartForm == nil {
			if err := r.ParseMultipartForm(multipartMemory); err != nil {
				return ""
			}
		}
		if v := r.MultipartForm.Value[name]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	return r.PostFormValue(name)
}

// safeNext returns where to go after signing in: a path of the console,
// never another site.
func safeNext(next string) string {
	if !strings.HasPrefix(next, Prefix+"/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return Prefix + "/"
	}
	return next
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	id, ok := c.authenticate(w, r)
	if !ok {
		return
	}
	next := safeNext(r.URL.Query().Get("next"))
	if id != "" {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	c.render(w, r, http.StatusOK, "login", &page{Title: "Sign in", Version: c.version}, loginData{Next: next})
}

type loginData struct {
	Next  string
	Error string
}

func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxLoginBytes)
	if left := c.limiter.LockedOut(r); left > 0 {
		c.locked(w, r, left)
		return
	}
	next := safeNext(r.PostFormValue("next"))
	key := r.PostFormValue("key")
	if !mdmhttp.CredentialsMatch(mdmhttp.APIUsername, key, mdmhttp.APIUsername, c.apiKey) {
		c.limiter.Failed(r)
		c.logger.Info("msg", "console sign-in refused", "addr", r.RemoteAddr)
		c.render(w, r, http.StatusUnauthorized, "login", &page{Title: "Sign in", Version: c.version},
			loginData{Next: next, Error: "That is not the API key."})
		return
	}
	c.limiter.Succeeded(r)
	http.SetCookie(w, &http.Cookie{
		Name:     SessionCookie,
		Value:    c.key.newSession(c.now().Add(c.lifetime)),
		Path:     Prefix + "/",
		MaxAge:   int(c.lifetime / time.Second),
		HttpOnly: true,
		Secure:   secure(r),
		SameSite: http.SameSiteStrictMode,
	})
	c.logger.Info("msg", "console sign-in", "addr", r.RemoteAddr)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, _ *page) {
	http.SetCookie(w, &http.Cookie{
		Name: SessionCookie, Value: "", Path: Prefix + "/", MaxAge: -1,
		HttpOnly: true, Secure: secure(r), SameSite: http.SameSiteStrictMode,
	})
	http.Redirect(w, r, Prefix+"/login", http.StatusSeeOther)
}
