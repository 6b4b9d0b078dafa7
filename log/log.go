// Package log is the small structured-logging interface every component
// takes, plus helpers to carry request fields (trace ID, enrollment ID) in
// a context. Implementations live in subpackages.
package log

import "context"

// Logger logs key-value pairs at two levels.
type Logger interface {
	Info(keyvals ...any)
	Debug(keyvals ...any)
	With(keyvals ...any) Logger
}

// Nop is a Logger that discards everything.
var Nop Logger = nopLogger{}

type nopLogger struct{}

func (nopLogger) Info(...any)          {}
func (nopLogger) Debug(...any)         {}
func (n nopLogger) With(...any) Logger { return n }

type ctxKey struct{}

// WithFields returns a context carrying keyvals in addition to any fields
// already in ctx.
func WithFields(ctx context.Context, keyvals ...any) context.Context {
	prev, _ := ctx.Value(ctxKey{}).([]any)
	fields := make([]any, 0, len(prev)+len(keyvals))
	fields = append(fields, prev...)
	fields = append(fields, keyvals...)
	return context.WithValue(ctx, ctxKey{}, fields)
}

// Fields returns the key-value pairs carried by ctx.
func Fields(ctx context.Context) []any {
	f, _ := ctx.Value(ctxKey{}).([]any)
	return f
}

// From returns logger with the request fields of ctx attached.
func From(ctx context.Context, logger Logger) Logger {
	if f := Fields(ctx); len(f) > 0 {
		return logger.With(f...)
	}
	return logger
}

type traceKey struct{}

// WithTraceID returns ctx carrying the trace ID of the request it belongs
// to. The HTTP layer sets it once per request; services read it with
// TraceID without knowing about HTTP.
func WithTraceID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, traceKey{}, id)
}

// TraceID returns the trace ID carried by ctx, or "".
func TraceID(ctx context.Context) string {
	s, _ := ctx.Value(traceKey{}).(string)
	return s
}
