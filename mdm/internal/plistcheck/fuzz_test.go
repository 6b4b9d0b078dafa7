package plistcheck

import (
	"math"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/groob/plist"
	"github.com/nanomdm/nanomdm/internal/fixture"
)

// fuzzSeeds are the real captures, their binary encodings, and a spread of
// hostile and edge-case binary plists, kept small so mutations stay fast.
func fuzzSeeds(tb testing.TB) [][]byte {
	tb.Helper()
	var seeds [][]byte
	for _, name := range captures {
		data := fixture.Read(tb, name)
		seeds = append(seeds, data)
		var m map[string]any
		if err := plist.Unmarshal(data, &m); err != nil {
			tb.Fatalf("decoding capture %s: %v", name, err)
		}
		seeds = append(seeds, encodeBinary(m))
	}
	seeds = append(seeds,
		encodeBinary(map[string]any{
			"s": "text", "u": "ünï", "i": uint64(1 << 40), "r": 1.5, "t": true,
			"d": []byte{1, 2}, "at": time.Unix(1e9, 0), "a": []any{"x", uint64(2), []any{}},
			"m": map[string]any{"k": false},
		}),
		smallDict(),
		nestedArraysBinary(32),
		nestedArraysBinary(33),
		nestedArraysXML(33, true),
		laughs(30, 2),
		laughs(4, 2),
		sharedRefs("x", 20),
		leafIn(0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1),
		leafIn(0x81, 0, 1),
		leafIn(0x5f, 0x10, 16, 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', 'p'),
		leafIn(append([]byte{0xaf, 0x13}, u64(math.MaxUint64)...)...),
		editTrailer(smallDict(), func(t *trailer) { t.root = t.numObjs }),
		editTrailer(smallDict(), func(t *trailer) { t.refSize = 9 }),
		wrap("<dict><key>a</key><array><integer>-1</integer><real>1.5</real><date>2020-01-01T00:00:00Z</date><data>AAEC</data></array></dict>"),
	)
	{
		var b builder
		seeds = append(seeds, b.bytes(b.array(b.next())))
	}
	{
		var b builder
		k := b.ascii("a")
		d0 := b.dict([]uint64{k}, []uint64{b.next() + 1})
		b.dict([]uint64{k}, []uint64{d0})
		seeds = append(seeds, b.bytes(d0))
	}
	{
		var b builder
		s := b.add(countHead(typeSet, 1), b.next()+1)
		b.ascii("x")
		seeds = append(seeds, b.bytes(b.array(s, s)))
	}
	return seeds
}

// allocBound is the most groob/plist may allocate decoding an accepted
// input of n bytes twice (into a map and into an interface). groob spends
// about 100-200 bytes per value and Check allows fewer values than input
// bytes; copied string and data bytes are capped at expansionFactor*n +
// expansionSlack and groob copies each a few times per decode.
func allocBound(n int) uint64 {
	return 512*uint64(n) + 16*expansionFactor*uint64(n) + 16*expansionSlack
}

// FuzzCheck feeds Check arbitrary input. Whatever Check accepts must
// decode in groob/plist without a panic, promptly, and within allocBound.
// A stack overflow from a cycle would crash the fuzz worker, which the
// fuzzer also reports.
func FuzzCheck(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// The time limits are loose because fuzz workers share the CPU;
		// the hazards they catch (exponential DAGs) take far longer.
		start := time.Now()
		err := Check(data, DefaultLimits)
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("Check took %v", d)
		}
		if err != nil {
			sentinel(t, err) // fails unless err wraps exactly one sentinel
			return
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		groobDecode(t, data)
		runtime.ReadMemStats(&after)
		if alloc, limit := after.TotalAlloc-before.TotalAlloc, allocBound(len(data)); alloc > limit {
			t.Fatalf("groob/plist allocated %d bytes for a %d-byte input (limit %d)", alloc, len(data), limit)
		}
	})
}

// TestWorstAccepted decodes the most expensive inputs Check accepts under
// DefaultLimits and holds groob/plist to the same time and allocation
// bounds as FuzzCheck.
func TestWorstAccepted(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("A", 64<<10)
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"binary 100_000 refs to one string", sharedRefs("x", 99_999)},
		{"binary 100_000 distinct integers", distinctInts(99_999)},
		{"binary 64 KiB string shared 20 times", sharedRefs(big, 20)},
		{"binary 32 nested arrays", nestedArraysBinary(32)},
		{"xml 100_000 elements", bigArrayXML(99_999)},
		{"xml 32 nested arrays", nestedArraysXML(32, true)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := Check(tc.data, DefaultLimits); err != nil {
				t.Fatalf("Check: have %v, want nil", err)
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			start := time.Now()
			groobDecode(t, tc.data)
			elapsed := time.Since(start)
			runtime.ReadMemStats(&after)
			alloc, limit := after.TotalAlloc-before.TotalAlloc, allocBound(len(tc.data))
			t.Logf("%d bytes: groob decoded twice in %v, allocating %d bytes (%.1f per input byte)",
				len(tc.data), elapsed, alloc, float64(alloc)/float64(len(tc.data)))
			if alloc > limit {
				t.Errorf("groob/plist allocated %d bytes for a %d-byte input (limit %d)", alloc, len(tc.data), limit)
			}
		})
	}
}
