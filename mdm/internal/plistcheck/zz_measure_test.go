package plistcheck

import (
	"runtime"
	"strings"
	"testing"

	"github.com/groob/plist"
)

func TestMeasureAlloc(t *testing.T) {
	for name, data := range map[string][]byte{
		"shared x 99999":  sharedRefs("x", 99_999),
		"distinct 99999":  distinctInts(99_999),
		"laughs 15":       laughs(15, 2),
		"big x8":          sharedRefs(strings.Repeat("A", 64<<10), 8),
		"xml 99999":       bigArrayXML(99_999),
		"tokenupdate":     readCapture(t, "TokenUpdate.1.plist"),
		"dicts":           wrap(strings.Repeat("<dict><key>k</key>", 32) + "<true/>" + strings.Repeat("</dict>", 32)),
	} {
		var a, b runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&a)
		var m map[string]any
		var v any
		plist.Unmarshal(data, &m)
		plist.Unmarshal(data, &v)
		runtime.ReadMemStats(&b)
		el := 0
		t.Logf("%-16s len=%8d alloc=%10d perByte=%.1f", name, len(data), b.TotalAlloc-a.TotalAlloc, float64(b.TotalAlloc-a.TotalAlloc)/float64(len(data)))
		_ = el
	}
}
