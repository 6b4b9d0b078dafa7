package certverify

import (
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/mdm/simulator"
)

// TestPoolVerifierCache checks that remembered certificates get the
// answer a fresh check would give as the clock moves: inside the span in
// which the leaf and its CA are both valid, after the leaf expires,
// before the CA's validity starts, and after an entry was evicted.
func TestPoolVerifierCache(t *testing.T) {
	t.Parallel()
	root := newCA(t, "root", newECKey(t), nil, nil)
	leaf := newLeaf(t, root, leafOpts{})
	other := newLeaf(t, root, leafOpts{})
	for _, size := range []int{0, 1, DefaultCacheSize} {
		now := testNow
		v, err := NewPoolVerifier(pemOf(root.cert), nil, WithClock(func() time.Time { return now }), WithCacheSize(size))
		if err != nil {
			t.Fatalf("NewPoolVerifier: %v", err)
		}
		steps := []struct {
			at   time.Time
			cert *x509.Certificate
			want error
		}{
			{testNow, leaf, nil},
			{testNow, leaf, nil},
			{testNow, other, nil}, // evicts leaf when the size is 1
			{leaf.NotAfter, leaf, nil},
			{leaf.NotAfter.Add(time.Second), leaf, ErrExpired},
			{testNow, leaf, nil},
			{leaf.NotBefore.Add(-time.Second), leaf, ErrExpired},
			{root.cert.NotBefore.Add(-time.Second), other, ErrExpired},
			{leaf.NotBefore, other, nil},
		}
		for i, st := range steps {
			now = st.at
			err := v.Verify(st.cert)
			if (st.want == nil) != (err == nil) || (st.want != nil && !errors.Is(err, st.want)) {
				t.Errorf("cache size %d, step %d (at %v): have %v, want %v", size, i, st.at, err, st.want)
			}
		}
		if size > 0 && len(v.verified) > size {
			t.Errorf("cache size %d: %d entries remembered", size, len(v.verified))
		}
	}
}

// BenchmarkPoolVerifierVerify is the check of a device identity on every
// request, remembered and not:
//
//	go test -run '^$' -bench PoolVerifierVerify ./certverify/
func BenchmarkPoolVerifierVerify(b *testing.B) {
	ca, err := simulator.NewCA("benchmark CA")
	if err != nil {
		b.Fatalf("creating CA: %v", err)
	}
	id, err := ca.Issue("device")
	if err != nil {
		b.Fatalf("issuing identity: %v", err)
	}
	for _, tc := range []struct {
		name string
		size int
	}{{"cached", DefaultCacheSize}, {"uncached", 0}} {
		b.Run(tc.name, func(b *testing.B) {
			v, err := NewPoolVerifier(ca.CertPEM(), nil, WithCacheSize(tc.size))
			if err != nil {
				b.Fatalf("NewPoolVerifier: %v", err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := v.Verify(id.Cert); err != nil {
					b.Fatalf("Verify: %v", err)
				}
			}
		})
	}
}
