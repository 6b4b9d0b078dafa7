// Package gokit adapts go-kit/log to the project's log.Logger: logfmt
// lines with a timestamp, a level, and the caller's key-value pairs.
package gokit

import (
	"io"

	kitlog "github.com/go-kit/log"
	"github.com/go-kit/log/level"

	"github.com/nanomdm/nanomdm/log"
)

// Logger writes logfmt lines through go-kit/log.
type Logger struct {
	logger kitlog.Logger
	debug  bool
}

// New returns a Logger writing logfmt to w; debug enables Debug lines.
func New(w io.Writer, debug bool) *Logger {
	l := kitlog.NewLogfmtLogger(kitlog.NewSyncWriter(w))
	l = kitlog.With(l, "ts", kitlog.DefaultTimestampUTC)
	return &Logger{logger: l, debug: debug}
}

// Info logs at info level.
func (l *Logger) Info(keyvals ...any) {
	level.Info(l.logger).Log(keyvals...)
}

// Debug logs at debug level when enabled.
func (l *Logger) Debug(keyvals ...any) {
	if l.debug {
		level.Debug(l.logger).Log(keyvals...)
	}
}

// With returns a Logger that adds keyvals to every line.
func (l *Logger) With(keyvals ...any) log.Logger {
	return &Logger{logger: kitlog.With(l.logger, keyvals...), debug: l.debug}
}
