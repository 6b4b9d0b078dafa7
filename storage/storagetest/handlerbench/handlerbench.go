// Package handlerbench holds the benchmarks that drive a storage backend
// through the server's HTTP handlers (MDM and enqueue API), apart from the
// contract suite so that storagetest needs no handler or service.
package handlerbench

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nanomdm/nanomdm/certverify"
	mdmhttp "github.com/nanomdm/nanomdm/http"
	"github.com/nanomdm/nanomdm/http/api"
	httpmdm "github.com/nanomdm/nanomdm/http/mdm"
	"github.com/nanomdm/nanomdm/log"
	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/mdm/simulator"
	"github.com/nanomdm/nanomdm/service/certauth"
	"github.com/nanomdm/nanomdm/service/nanomdm"
	"github.com/nanomdm/nanomdm/storage"
	"github.com/nanomdm/nanomdm/storage/storagetest"
)

// RoundTrip measures one command-loop request as the
// server handles it, over s: the MDM handler built as cmd/nanomdm builds
// it (trace middleware, identity middleware verifying the Mdm-Signature
// and the certificate chain, the check-in and command handler, certauth,
// the core service) receives an Acknowledged report carrying a realistic
// result body and answers with the next queued command. Enqueueing and
// signing the device's requests happen outside the timer. Like
// storagetest.BenchmarkCommandLoop it reports cpu-ns/op.
func RoundTrip(b *testing.B, s storage.AllStorage) {
	const batch = 10
	ca, err := simulator.NewCA("benchmark CA")
	if err != nil {
		b.Fatalf("creating CA: %v", err)
	}
	verifier, err := certverify.NewPoolVerifier(ca.CertPEM(), nil)
	if err != nil {
		b.Fatalf("creating verifier: %v", err)
	}
	svc := certauth.New(nanomdm.New(s), s)
	h := mdmhttp.TraceLoggingMiddleware(
		httpmdm.IdentityMiddleware(httpmdm.CheckinAndCommandHandler(svc), verifier), log.Nop)

	udid := simulator.NewUDID()
	id, err := ca.Issue(udid)
	if err != nil {
		b.Fatalf("issuing identity: %v", err)
	}
	transport := &simulator.Transport{URL: "http://nanomdm.invalid/mdm"}
	dev := simulator.NewDeviceWithUDID(transport, id, udid)
	serve := func(body []byte, checkin bool) *httptest.ResponseRecorder {
		req, err := transport.NewRequest(context.Background(), id, body, checkin)
		if err != nil {
			b.Fatalf("building request: %v", err)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("request: status %d: %s", rec.Code, rec.Body)
		}
		return rec
	}
	for _, msg := range []any{dev.AuthenticateMessage(), dev.Channel.TokenUpdateMessage()} {
		body, err := mdm.EncodePlist(msg)
		if err != nil {
			b.Fatalf("encoding check-in: %v", err)
		}
		serve(body, true)
	}
	enrollment := []string{dev.Channel.ID()}

	cmds := make([]*mdm.Command, batch)
	reqs := make([]*http.Request, batch)
	var cpu int64
	b.ReportAllocs()
	b.ResetTimer()
	b.StopTimer()
	for done := 0; done < b.N; {
		n := min(batch, b.N-done)
		for i := 0; i < n; i++ {
			cmds[i] = storagetest.NewCommand(b, "DeviceInformation")
			if errs, err := s.EnqueueCommand(context.Background(), enrollment, cmds[i]); err != nil || errs != nil {
				b.Fatalf("enqueue: %v %v", err, errs)
			}
			body, err := dev.Channel.ReportBody(dev.Channel.RealisticAcknowledge(cmds[i]))
			if err != nil {
				b.Fatalf("encoding report: %v", err)
			}
			if reqs[i], err = transport.NewRequest(context.Background(), id, body, false); err != nil {
				b.Fatalf("building request: %v", err)
			}
		}
		idle, err := dev.Channel.ReportBody(simulator.Report{Status: mdm.StatusIdle})
		if err != nil {
			b.Fatalf("encoding report: %v", err)
		}
		if rec := serve(idle, false); !bytes.Contains(rec.Body.Bytes(), []byte(cmds[0].CommandUUID)) {
			b.Fatalf("idle: have %q, want command %s", rec.Body, cmds[0].CommandUUID)
		}
		recs := make([]*httptest.ResponseRecorder, n)
		for i := range recs {
			recs[i] = httptest.NewRecorder()
		}
		b.StartTimer()
		start := storagetest.CPUTime()
		for i := 0; i < n; i++ {
			h.ServeHTTP(recs[i], reqs[i])
		}
		cpu += storagetest.CPUTime() - start
		b.StopTimer()
		for i, rec := range recs {
			if rec.Code != http.StatusOK {
				b.Fatalf("report: status %d: %s", rec.Code, rec.Body)
			}
			if i+1 < n && !bytes.Contains(rec.Body.Bytes(), []byte(cmds[i+1].CommandUUID)) {
				b.Fatalf("report: have answer %q, want command %s", rec.Body, cmds[i+1].CommandUUID)
			}
		}
		done += n
	}
	if cpu > 0 {
		b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
	}
}

// EnqueueMany measures one /v1/enqueue call (without push) that
// queues a command for n enrolled IDs, through the API handler, over s.
// seed makes ids known to s; nil enrolls them through the storage
// interface (slow for n in the hundred thousands on disk backends, so
// backends pass a bulk seeder). Each iteration enqueues a new command to
// all of them. It reports milliseconds per call and IDs per second.
func EnqueueMany(b *testing.B, s storage.AllStorage, n int, seed func(ids []string)) {
	ids := make([]string, n)
	if seed == nil {
		for i := range ids {
			c := storagetest.NewDevice(b)
			c.Enroll(b, s)
			ids[i] = c.ID()
		}
	} else {
		for i := range ids {
			ids[i] = storagetest.RandomUUID()
		}
		seed(ids)
	}
	h := api.EnqueueHandler(s, api.WithMaxIDs(n))
	path := "/" + strings.Join(ids, ",") + "?nopush=1"
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		cmd := storagetest.NewCommand(b, "DeviceInformation")
		req := httptest.NewRequest(http.MethodPut, path, bytes.NewReader(cmd.Raw))
		rec := httptest.NewRecorder()
		b.StartTimer()
		h.ServeHTTP(rec, req)
		b.StopTimer()
		if rec.Code != http.StatusOK {
			b.Fatalf("enqueue to %d IDs: status %d: %.300s", n, rec.Code, rec.Body)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/call")
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "ids/s")
}
