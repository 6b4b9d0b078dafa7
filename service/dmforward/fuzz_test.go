package dmforward

import (
	"bytes"
	"errors"
	"testing"

	"github.com/nanomdm/nanomdm/service"
)

// FuzzAnswer feeds arbitrary DM server answers (status, signature header,
// body) to the answer check. Whatever arrives, an answer is handed to the
// device only when its signature verifies, the device never gets anything
// but the server's own body, and nothing panics.
func FuzzAnswer(f *testing.F) {
	key := []byte("recv key")
	f.Add(200, Sign(key, []byte(`{"a":1}`)), []byte(`{"a":1}`), true)
	f.Add(200, "", []byte(`{}`), true)
	f.Add(404, Sign(key, []byte("nope")), []byte("nope"), true)
	f.Add(500, "not base64!", []byte("x"), false)
	f.Add(99, "", []byte(nil), false)
	f.Add(200, " "+Sign(key, nil)+" ", []byte(nil), true)
	f.Fuzz(func(t *testing.T, status int, signature string, body []byte, verify bool) {
		fw := &Forwarder{bodyLimit: 1 << 20}
		if verify {
			fw.recvKey = key
		}
		got, err := fw.answer(status, signature, bytes.NewReader(body))
		verified := Verify(key, body, signature)
		if verify && !verified {
			if !errors.Is(err, ErrBadSignature) {
				t.Fatalf("unverified answer: err = %v, want ErrBadSignature", err)
			}
			return
		}
		var se *service.StatusError
		switch {
		case err == nil:
			if status != 200 || !bytes.Equal(got, body) {
				t.Fatalf("accepted status %d with %q, want only 200 with the body", status, got)
			}
		case errors.As(err, &se):
			if se.Status != status || se.Status < 200 || se.Status > 599 || !bytes.Equal(se.Body, body) {
				t.Fatalf("StatusError %d %q for status %d body %q", se.Status, se.Body, status, body)
			}
		case status >= 200 && status <= 599 && int64(len(body)) <= fw.bodyLimit:
			t.Fatalf("status %d: unexpected error %v", status, err)
		}
		if !Verify(key, body, Sign(key, body)) {
			t.Fatal("a fresh signature does not verify")
		}
	})
}
