package plistcheck

import (
	"testing"

	"github.com/groob/plist"
	"github.com/nanomdm/nanomdm/internal/fixture"
)

// benchCapture is the largest real capture.
const benchCapture = "TokenUpdate.1.plist"

func benchInputs(b *testing.B) (xmlData, binData []byte) {
	b.Helper()
	xmlData = fixture.Read(b, benchCapture)
	var m map[string]any
	if err := plist.Unmarshal(xmlData, &m); err != nil {
		b.Fatalf("decoding capture: %v", err)
	}
	return xmlData, encodeBinary(m)
}

func benchCheck(b *testing.B, data []byte) {
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if err := Check(data, DefaultLimits); err != nil {
			b.Fatalf("Check: %v", err)
		}
	}
}

// benchGroob measures the decode Check runs in front of, for comparison.
func benchGroob(b *testing.B, data []byte) {
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		var m map[string]any
		if err := plist.Unmarshal(data, &m); err != nil {
			b.Fatalf("groob decode: %v", err)
		}
	}
}

func BenchmarkCheckXML(b *testing.B) {
	data, _ := benchInputs(b)
	benchCheck(b, data)
}

func BenchmarkGroobXML(b *testing.B) {
	data, _ := benchInputs(b)
	benchGroob(b, data)
}

func BenchmarkCheckBinary(b *testing.B) {
	_, data := benchInputs(b)
	benchCheck(b, data)
}

func BenchmarkGroobBinary(b *testing.B) {
	_, data := benchInputs(b)
	benchGroob(b, data)
}
