package pgsql

import (
	"testing"

	"github.com/nanomdm/nanomdm/storage/internal/sqlstore/sqltest"
)

// Benchmarks on a fresh database of the test DSN, for example:
//
//	go test -run '^$' -bench HandlerRoundTrip ./storage/pgsql/
//	go test -run '^$' -bench Enqueue100k -benchtime 3x ./storage/pgsql/

func BenchmarkHandlerRoundTrip(b *testing.B) { sqltest.BenchmarkHandlerRoundTrip(b, backend) }
func BenchmarkCommandLoop(b *testing.B)      { sqltest.BenchmarkCommandLoop(b, backend) }
func BenchmarkEnqueue100k(b *testing.B)      { sqltest.BenchmarkEnqueue100k(b, backend) }
func BenchmarkOutboxAppend(b *testing.B)     { sqltest.BenchmarkOutboxAppend(b, backend) }
