package mdm_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime/metrics"
	"strings"
	"testing"

	httpmdm "github.com/nanomdm/nanomdm/http/mdm"
)

// paddedReport is an Acknowledged report of about n bytes.
func paddedReport(n int) []byte {
	return []byte(`<?xml version="1.0" encoding="UTF-8"?>
<plist version="1.0"><dict>
<key>UDID</key><string>padded-device</string>
<key>Status</key><string>Acknowledged</string>
<key>CommandUUID</key><string>padded-command</string>
<key>Padding</key><string>` + strings.Repeat("p", n) + `</string>
</dict></plist>`)
}

// allocated returns the bytes allocated on the heap while f ran.
func allocated(f func()) uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	before := s[0].Value.Uint64()
	f()
	metrics.Read(s)
	return s[0].Value.Uint64() - before
}

// TestBodyReadOnce sends a 4 MiB report through the identity middleware
// and the report handler: the body is read from the connection once into
// one buffer of its length, which the middleware verifies the signature
// over and the handler decodes and passes on, so the request allocates
// little more than the body once. Reading it twice (the middleware, then
// the handler again from a copy) would allocate it at least twice.
func TestBodyReadOnce(t *testing.T) {
	f := newFixture(t)
	const size = 4 << 20
	body := paddedReport(size)
	svc := &stubService{}
	h := f.handler(svc, httpmdm.WithBodyLimit(8<<20))
	signed := signedRequest(t, f.id, body, false)
	send := func() (int, uint64) {
		req := signed.Clone(signed.Context())
		// A reader the server would give: it is not a *bytes.Reader, so
		// nothing can take its bytes without reading them.
		req.Body = io.NopCloser(struct{ io.Reader }{bytes.NewReader(body)})
		rec := httptest.NewRecorder()
		var code int
		n := allocated(func() {
			h.ServeHTTP(rec, req)
			code = rec.Code
		})
		return code, n
	}
	send() // warm up
	code, n := send()
	if code != http.StatusOK {
		t.Fatalf("status: have %d, want 200", code)
	}
	if svc.lastReq == nil {
		t.Fatal("the report did not reach the service")
	}
	t.Logf("a %d-byte report allocated %d bytes (%.2f times its size)", len(body), n, float64(n)/float64(len(body)))
	if limit := uint64(len(body)) * 3 / 2; n > limit {
		t.Errorf("a %d-byte report allocated %d bytes, want at most %d: the body was copied", len(body), n, limit)
	}
}
