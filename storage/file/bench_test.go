package file

import (
	"os"
	"sync"
	"testing"

	"github.com/nanomdm/nanomdm/storage/storagetest"
	"github.com/nanomdm/nanomdm/storage/storagetest/handlerbench"
)

// BenchmarkHandlerRoundTrip is one report→next-command request through the
// MDM handler, identity middleware and services on file storage:
//
//	go test -run '^$' -bench HandlerRoundTrip ./storage/file/
func BenchmarkHandlerRoundTrip(b *testing.B) {
	s, err := New(b.TempDir())
	if err != nil {
		b.Fatalf("opening storage: %v", err)
	}
	handlerbench.RoundTrip(b, s)
}

// BenchmarkEnqueue100k is one /v1/enqueue call naming 100,000 enrolled
// IDs. The enrollments are seeded as the state files a TokenUpdate
// leaves, which is all an enqueue reads:
//
//	go test -run '^$' -bench Enqueue100k -benchtime 1x -timeout 30m ./storage/file/
func BenchmarkEnqueue100k(b *testing.B) {
	s, err := New(b.TempDir())
	if err != nil {
		b.Fatalf("opening storage: %v", err)
	}
	handlerbench.EnqueueMany(b, s, 100_000, func(ids []string) {
		var wg sync.WaitGroup
		const workers = 4
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < len(ids); i += workers {
					c, err := s.channel(ids[i])
					if err == nil {
						err = os.MkdirAll(c.dir, dirMode)
					}
					if err == nil {
						err = s.writeState(c, &state{Type: "Device", Enabled: true, Tally: 1,
							Topic: "com.apple.mgmt.External.bench", PushMagic: "magic", TokenHex: "00"})
					}
					if err != nil {
						b.Errorf("seeding %s: %v", ids[i], err)
						return
					}
				}
			}()
		}
		wg.Wait()
		if b.Failed() {
			b.FailNow()
		}
	})
}

func BenchmarkOutboxAppend(b *testing.B) {
	s, err := New(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	storagetest.BenchmarkOutboxAppend(b, s)
}
