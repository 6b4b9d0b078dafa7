package mdm_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/nanomdm/nanomdm/cryptoutil"
	httpmdm "github.com/nanomdm/nanomdm/http/mdm"
	"github.com/nanomdm/nanomdm/mdm"
)

// FuzzHandler feeds arbitrary bodies to the MDM handler behind a valid
// identity: whatever the bytes, the answer is a status from SPEC §2.1,
// never 401, and never a panic.
func FuzzHandler(f *testing.F) {
	files, _ := filepath.Glob("../../mdm/testdata/*.plist")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, true)
		f.Add(b, false)
	}
	fx, err := makeFixture()
	if err != nil {
		f.Fatalf("making fixture: %v", err)
	}
	header := cryptoutil.EncodeCertHeaderRFC9440(fx.id.Cert)
	h := fx.handler(&stubService{}, httpmdm.WithCertHeader("X-Cert"), httpmdm.WithBodyLimit(64<<10))
	f.Fuzz(func(t *testing.T, body []byte, checkin bool) {
		req := httptest.NewRequest(http.MethodPut, "/mdm", bytes.NewReader(body))
		req.Header.Set("X-Cert", header)
		if checkin {
			req.Header.Set("Content-Type", mdm.CheckinContentType)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case 200, 400, 413, 500:
		default:
			t.Errorf("unexpected status %d", rec.Code)
		}
	})
}
