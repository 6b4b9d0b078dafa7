// Package logtest records what is logged, for tests: a Recorder is a
// log.Logger that keeps every line, and a Buffer collects a server's or a
// process's log output written from several goroutines.
package logtest

import (
	"bytes"
	"fmt"
	"strings"
	"sync"

	"github.com/nanomdm/nanomdm/log"
)

// Recorder is a log.Logger that keeps every line. The zero value is ready
// to use. Loggers made with With share the lines of the Recorder they
// came from, and it is safe for concurrent use.
type Recorder struct {
	root   *Recorder // holds the lines; nil in the Recorder a test made
	fields []any

	mu    sync.Mutex
	lines [][]any
}

func (r *Recorder) store() *Recorder {
	if r.root != nil {
		return r.root
	}
	return r
}

// Info records a line.
func (r *Recorder) Info(keyvals ...any) { r.add(keyvals) }

// Debug records a line, like Info.
func (r *Recorder) Debug(keyvals ...any) { r.add(keyvals) }

// With returns a logger that records into r with keyvals before each
// line's own pairs.
func (r *Recorder) With(keyvals ...any) log.Logger {
	fields := append(append([]any{}, r.fields...), keyvals...)
	return &Recorder{root: r.store(), fields: fields}
}

func (r *Recorder) add(keyvals []any) {
	line := append(append([]any{}, r.fields...), keyvals...)
	s := r.store()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines = append(s.lines, line)
}

// Lines returns the key-value pairs of every line so far, With fields
// first.
func (r *Recorder) Lines() [][]any {
	s := r.store()
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]any(nil), s.lines...)
}

// Text returns the lines containing every one of subs (all lines without
// subs), each as "key=value key=value" text.
func (r *Recorder) Text(subs ...string) []string {
	var out []string
	for _, kv := range r.Lines() {
		var b strings.Builder
		for i := 0; i < len(kv); i += 2 {
			if i > 0 {
				b.WriteByte(' ')
			}
			if i+1 < len(kv) {
				fmt.Fprintf(&b, "%v=%v", kv[i], kv[i+1])
			} else {
				fmt.Fprintf(&b, "%v", kv[i])
			}
		}
		line := b.String()
		match := true
		for _, sub := range subs {
			match = match && strings.Contains(line, sub)
		}
		if match {
			out = append(out, line)
		}
	}
	return out
}

// Buffer is a bytes.Buffer that is safe for concurrent use, for log
// output. The zero value is ready to use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
