package storagetest

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/storage"
)

// BenchmarkCommandLoop measures the storage work of one command-loop
// request: an Acknowledged report followed by RetrieveNextCommand, with a
// few commands queued. Besides ns/op it reports cpu-ns/op, the process CPU
// time (user and system) per request where the platform can measure it.
// A backend's BenchmarkCommandLoop calls it with a fresh store.
func BenchmarkCommandLoop(b *testing.B, s storage.AllStorage) {
	const batch = 10
	dev := NewDevice(b)
	dev.Enroll(b, s)
	req := dev.Request()
	cmds := make([]*mdm.Command, batch)
	reports := make([]*mdm.CommandResults, batch)
	var cpu int64
	b.ReportAllocs()
	b.ResetTimer()
	b.StopTimer()
	for done := 0; done < b.N; {
		n := min(batch, b.N-done)
		for i := 0; i < n; i++ {
			cmds[i] = NewCommand(b, "DeviceInformation")
			Enqueue(b, s, cmds[i], dev)
			reports[i] = dev.Report(b, mdm.StatusAcknowledged, cmds[i].CommandUUID)
		}
		if _, err := s.RetrieveNextCommand(req, false); err != nil {
			b.Fatalf("next command: %v", err)
		}
		b.StartTimer()
		start := CPUTime()
		for i := 0; i < n; i++ {
			if err := s.StoreCommandReport(req, reports[i]); err != nil {
				b.Fatalf("storing report: %v", err)
			}
			next, err := s.RetrieveNextCommand(req, false)
			if err != nil {
				b.Fatalf("next command: %v", err)
			}
			if i+1 < n && (next == nil || next.CommandUUID != cmds[i+1].CommandUUID) {
				b.Fatalf("next command: have %v, want %s", next, cmds[i+1].CommandUUID)
			}
		}
		cpu += CPUTime() - start
		b.StopTimer()
		done += n
	}
	if cpu > 0 {
		b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkOutboxAppend is the outbox write each device request adds when
// the webhook runs: one event of about 1 KiB appended, then (outside the
// timing) delivered and deleted in batches so the outbox stays small.
func BenchmarkOutboxAppend(b *testing.B, s storage.OutboxStore) {
	ctx := context.Background()
	body := bytes.Repeat([]byte("x"), 1024)
	var cpu int64
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		ev := storage.OutboxEvent{Key: fmt.Sprintf("bench-%d", i%100), Body: body}
		start := CPUTime()
		if err := s.Append(ctx, []storage.OutboxEvent{ev}); err != nil {
			b.Fatalf("append: %v", err)
		}
		cpu += CPUTime() - start
		if i%1000 == 999 {
			b.StopTimer()
			if _, err := s.Trim(ctx, 0, time.Now().Add(time.Hour)); err != nil {
				b.Fatalf("trim: %v", err)
			}
			b.StartTimer()
		}
	}
	b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
}
