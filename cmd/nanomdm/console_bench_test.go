package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/cryptoutil"
	"github.com/nanomdm/nanomdm/http/ui"
	"github.com/nanomdm/nanomdm/storage/pgsql"
	"github.com/nanomdm/nanomdm/storage/storagetest"
)

// BenchmarkConsolePages100k loads console pages from PostgreSQL holding
// 100,000 enrollments (90,000 devices, 10,000 user channels, last seen
// over 30 days, 5% disabled, a command queued for every tenth and
// answered NotNow, two push certificates), in
// process: the time per op is the server's time for the page. Goal:
// overview and enrollments list under 200 ms. Run with
//
//	eval "$(bash .ci/sqldb.sh)"
//	go test -run '^$' -bench ConsolePages100k -benchtime 20x ./cmd/nanomdm/
func BenchmarkConsolePages100k(b *testing.B) {
	dsn := freshPgSQL(b)
	ctx := context.Background()
	store, err := pgsql.New(ctx, dsn, "migrate=1")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	for _, q := range []string{
		`INSERT INTO devices (id, serial_number)
SELECT 'BENCH-' || (1000000 + n), 'SER' || (1000000 + n) FROM generate_series(0, 89999) n`,
		`INSERT INTO enrollments (id, device_id, type, topic, push_magic, token_hex, enabled, last_seen_at)
SELECT id, id, 'Device', 'com.apple.mgmt.External.bench', 'magic', 'abcdef', random() > 0.05,
       now() - random() * INTERVAL '30 days' FROM devices`,
		`INSERT INTO enrollments (id, device_id, type, topic, push_magic, token_hex, enabled, last_seen_at)
SELECT id || ':USER', id, 'User', 'com.apple.mgmt.External.bench', 'magic', 'abcdef', true,
       now() - random() * INTERVAL '30 days' FROM devices WHERE (substr(id, 7)::int - 1000000) % 9 = 0`,
		`INSERT INTO commands (command_uuid, request_type, command) VALUES ('BENCH-CMD', 'ProfileList', '\x00')`,
		`INSERT INTO enrollment_queue (id, command_uuid) SELECT id, 'BENCH-CMD' FROM enrollments WHERE right(id, 1) = '3'`,
		`INSERT INTO command_results (id, command_uuid, status, result, not_now_at, not_now_tally)
SELECT id, command_uuid, 'NotNow', convert_to('<?xml version="1.0" encoding="UTF-8"?><plist version="1.0"><dict><key>CommandUUID</key><string>BENCH-CMD</string><key>Status</key><string>NotNow</string><key>UDID</key><string>' || id || '</string></dict></plist>', 'UTF8'), now(), 1
FROM enrollment_queue`,
		`ANALYZE`,
	} {
		if _, err := store.DB().ExecContext(ctx, q); err != nil {
			b.Fatalf("seeding: %v\n%s", err, q)
		}
	}
	var n int
	if err := store.DB().QueryRowContext(ctx, "SELECT COUNT(*) FROM enrollments").Scan(&n); err != nil || n != 100_000 {
		b.Fatalf("seeded %d enrollments (%v), want 100,000", n, err)
	}
	// The enrollment page's identity certificate, and a push certificate
	// for the fleet's topic and one for another.
	certPEM := cryptoutil.PEMCertificate(storagetest.NewIdentityCert(b).Raw)
	if _, err := store.DB().ExecContext(ctx, "UPDATE devices SET identity_cert = $1 WHERE id = 'BENCH-1045673'", string(certPEM)); err != nil {
		b.Fatal(err)
	}
	for _, topic := range []string{"com.apple.mgmt.External.bench", "com.apple.mgmt.External.other"} {
		pemCert, pemKey := storagetest.NewPushCert(b, topic)
		if err := store.StorePushCert(ctx, pemCert, pemKey); err != nil {
			b.Fatal(err)
		}
	}
	console := ui.New(store, testAPIKey, ui.Actions{})
	for _, page := range []string{
		"/ui/",
		"/ui/enrollments",
		"/ui/enrollments?after=BENCH-1050000",
		"/ui/enrollments?type=User&enabled=true",
		"/ui/enrollments?enabled=true&seen=1h",
		"/ui/enrollments?q=SER1045678",
		"/ui/enrollments/BENCH-1045673",
		"/ui/pushcert",
	} {
		name := strings.TrimPrefix(page, "/ui/")
		if name == "" {
			name = "overview"
		}
		b.Run(name, func(b *testing.B) {
			var worst time.Duration
			for b.Loop() {
				r := httptest.NewRequest(http.MethodGet, page, nil)
				r.SetBasicAuth("nanomdm", testAPIKey)
				w := httptest.NewRecorder()
				start := time.Now()
				console.ServeHTTP(w, r)
				worst = max(worst, time.Since(start))
				if w.Code != http.StatusOK {
					b.Fatalf("%s: %d %s", page, w.Code, w.Body)
				}
			}
			b.ReportMetric(float64(worst.Microseconds())/1000, "max-ms")
		})
	}
}
