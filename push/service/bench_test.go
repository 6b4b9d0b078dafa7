package pushsvc_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/http/api"
	"github.com/nanomdm/nanomdm/push/nanopush"
	"github.com/nanomdm/nanomdm/push/nanopush/apnstest"
	pushsvc "github.com/nanomdm/nanomdm/push/service"
	"github.com/nanomdm/nanomdm/storage/inmem"
	"github.com/nanomdm/nanomdm/storage/storagetest"
)

// heapSampler records the peak of live heap objects while it runs.
type heapSampler struct {
	stop chan struct{}
	done chan uint64
}

func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func startHeapSampler() *heapSampler {
	h := &heapSampler{stop: make(chan struct{}), done: make(chan uint64)}
	go func() {
		var peak uint64
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			peak = max(peak, liveHeap())
			select {
			case <-h.stop:
				h.done <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return h
}

func (h *heapSampler) peak() uint64 {
	close(h.stop)
	return <-h.done
}

// BenchmarkPush10k is one /v1/push call for 10,000 enrolled IDs (inmem
// storage) through the push service and nanopush to the local fake APNs,
// for several worker counts, with no added latency and with a simulated
// round trip. It reports pushes per second and the peak live heap.
//
//	go test -run '^$' -bench Push10k -benchtime 3x ./push/service/
func BenchmarkPush10k(b *testing.B) {
	const n = 10_000
	store := inmem.New()
	topic := storagetest.NewTopic()
	uploadCert(b, store, topic)
	devs := enrollDevices(b, store, topic, n)
	path := "/" + strings.Join(idsOf(devs), ",")
	devs = nil

	for _, rtt := range []time.Duration{0, 5 * time.Millisecond} {
		for _, workers := range []int{1, 2, 5, 10, 20, 50, 100} {
			if rtt > 0 && workers < 5 {
				continue // minutes per call
			}
			b.Run(fmt.Sprintf("rtt=%v/workers=%d", rtt, workers), func(b *testing.B) {
				srv := apnstest.NewServer(b, func(*apnstest.Push) apnstest.Reply {
					return apnstest.Reply{Delay: rtt}
				}, apnstest.WithoutRecording())
				svc := pushsvc.New(store, nanopushFactory(b, srv, nanopush.WithWorkers(workers)).NewProvider)
				defer svc.Close()
				h := api.PushHandler(api.WithPusher(svc))
				// Warm up: the connection is open before the clock starts,
				// as it is on a running server.
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/"+idsOf(enrollDevices(b, store, topic, 1))[0], nil))
				if rec.Code != http.StatusOK {
					b.Fatalf("warm-up push: %d %s", rec.Code, rec.Body)
				}
				runtime.GC()
				base := liveHeap()
				hs := startHeapSampler()
				b.ResetTimer()
				for b.Loop() {
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
					if rec.Code != http.StatusOK {
						b.Fatalf("push: have %d, want 200: %.300s", rec.Code, rec.Body)
					}
				}
				b.StopTimer()
				peak := hs.peak()
				b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "pushes/s")
				b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
				b.ReportMetric(float64(peak-min(peak, base))/(1<<20), "heap-growth-MB")
			})
		}
	}
}
