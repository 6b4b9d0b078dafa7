package webhook

import (
	"bytes"
	"context"
	"github.com/nanomdm/nanomdm/storage/inmem"
	"io"
	"net/http"
	"testing"
)

// answerTransport answers every request with the status, Location header
// and body it holds, counting how much of the body the client read and
// whether it closed it.
type answerTransport struct {
	status   int
	location string
	body     []byte
	read     int
	closed   bool
	requests int
}

func (a *answerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	a.requests++
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	h := http.Header{}
	if a.location != "" {
		h.Set("Location", a.location)
	}
	return &http.Response{
		StatusCode: a.status,
		Header:     h,
		Body:       &countingBody{a: a, r: bytes.NewReader(a.body)},
		Request:    r,
	}, nil
}

type countingBody struct {
	a *answerTransport
	r io.Reader
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.a.read += n
	return n, err
}

func (b *countingBody) Close() error { b.a.closed = true; return nil }

// FuzzAnswer feeds arbitrary webhook endpoint answers (status, redirect
// target, body) to one delivery attempt. Whatever comes back, nothing
// panics, the body is closed and read at most 64 KiB, a redirect is
// never followed, only a 2xx answer counts as delivered, and a 5xx answer
// is retried. (A redirect whose Location header does not parse fails inside
// net/http before our redirect check and is retried like a connection
// error: harmless, as retries are bounded.)
func FuzzAnswer(f *testing.F) {
	f.Add(200, "", []byte(`{"ok":true}`))
	f.Add(204, "", []byte(nil))
	f.Add(301, "http://elsewhere.example/", []byte("moved"))
	f.Add(302, "::not a url", []byte(nil))
	f.Add(404, "", []byte("not found"))
	f.Add(503, "", bytes.Repeat([]byte("x"), 100<<10))
	f.Add(999, "", []byte(nil))
	f.Add(-1, "", []byte(nil))
	w := New("http://webhook.invalid/hook", inmem.New())
	defer w.Close(context.Background())
	f.Fuzz(func(t *testing.T, status int, location string, body []byte) {
		if status < 100 || status > 999 {
			// net/http only carries three-digit status codes.
			status = 100 + (status%900+900)%900
		}
		a := &answerTransport{status: status, location: location, body: body}
		w.client.Transport = a
		retry, err := w.post([]byte(`{"topic":"mdm.Connect"}`))
		switch {
		case status >= 200 && status < 300:
			if err != nil || retry {
				t.Fatalf("status %d: have retry %v err %v, want delivered", status, retry, err)
			}
		case status >= 500:
			if err == nil || !retry {
				t.Fatalf("status %d: have retry %v err %v, want a retried failure", status, retry, err)
			}
		case status >= 300 && status < 400 && location != "":
			if err == nil {
				t.Fatalf("status %d: a redirect counted as delivered", status)
			}
		default:
			if err == nil || retry {
				t.Fatalf("status %d: have retry %v err %v, want a final failure", status, retry, err)
			}
		}
		if a.requests != 1 {
			t.Fatalf("status %d: %d requests sent, want 1 (no redirects followed)", status, a.requests)
		}
		if !a.closed {
			t.Fatalf("status %d: answer body not closed", status)
		}
		if a.read > 64<<10 {
			t.Fatalf("read %d bytes of the answer, want at most 64 KiB", a.read)
		}
	})
}
