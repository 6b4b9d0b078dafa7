// Package api holds the operator API handlers: enqueueing commands and
// pushing to enrollments. Routes are mounted (and authenticated) in cmd.
package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	mdmhttp "github.com/nanomdm/nanomdm/http"
	"github.com/nanomdm/nanomdm/log"
	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/push"
	"github.com/nanomdm/nanomdm/storage"
)

// DefaultMaxIDs bounds the enrollment IDs of one API call.
const DefaultMaxIDs = 200_000

// DefaultBodyLimit bounds an API request body.
const DefaultBodyLimit = 10 << 20

// Pusher sends APNs notifications to enrollments.
type Pusher interface {
	Push(ctx context.Context, ids []string) (map[string]*push.Response, error)
}

// ErrPushNotConfigured answers push requests when the server has no
// push service.
var ErrPushNotConfigured = errors.New("push service not configured")

type options struct {
	logger    log.Logger
	pusher    Pusher
	maxIDs    int
	bodyLimit int64
}

// Option configures the API handlers.
type Option func(*options)

// WithLogger sets the logger.
func WithLogger(l log.Logger) Option { return func(o *options) { o.logger = l } }

// WithPusher sets the push service used after enqueueing and by /v1/push.
func WithPusher(p Pusher) Option { return func(o *options) { o.pusher = p } }

// WithMaxIDs bounds the IDs accepted in one call.
func WithMaxIDs(n int) Option { return func(o *options) { o.maxIDs = n } }

// WithBodyLimit bounds request bodies.
func WithBodyLimit(n int64) Option { return func(o *options) { o.bodyLimit = n } }

func newOptions(opts []Option) *options {
	o := &options{logger: log.Nop, maxIDs: DefaultMaxIDs, bodyLimit: DefaultBodyLimit}
	for _, f := range opts {
		f(o)
	}
	return o
}

// IDStatus is the per-enrollment part of an API answer.
type IDStatus struct {
	CommandError string `json:"command_error,omitempty"`
	PushResult   string `json:"push_result,omitempty"`
	PushError    string `json:"push_error,omitempty"`
}

// Response is the answer of the enqueue and push endpoints.
type Response struct {
	Status       map[string]*IDStatus `json:"status,omitempty"`
	NoPush       bool                 `json:"no_push,omitempty"`
	CommandError string               `json:"command_error,omitempty"`
	PushError    string               `json:"push_error,omitempty"`
	CommandUUID  string               `json:"command_uuid,omitempty"`
	RequestType  string               `json:"request_type,omitempty"`
}

func (r *Response) id(id string) *IDStatus {
	if r.Status == nil {
		r.Status = map[string]*IDStatus{}
	}
	s, ok := r.Status[id]
	if !ok {
		s = &IDStatus{}
		r.Status[id] = s
	}
	return s
}

// ErrBadIDs means the enrollment IDs of an API path are missing or malformed.
var ErrBadIDs = errors.New("bad enrollment ids")

// parseIDs splits the comma-separated IDs at the end of the path (the
// route prefix already stripped), validating each.
func parseIDs(path string, max int) ([]string, error) {
	path = strings.Trim(path, "/")
	if path == "" {
		return nil, fmt.Errorf("%w: no ids", ErrBadIDs)
	}
	if n := strings.Count(path, ",") + 1; n > max {
		return nil, fmt.Errorf("%w: %d ids, at most %d per call", ErrBadIDs, n, max)
	}
	return checkIDs(strings.Split(path, ","), max)
}

// checkIDs validates ids (at most max of them) and drops repeats,
// keeping the first of each in place. It reuses the array of ids.
func checkIDs(ids []string, max int) ([]string, error) {
	if len(ids) == 0 {
		return nil, fmt.Errorf("%w: no ids", ErrBadIDs)
	}
	if len(ids) > max {
		return nil, fmt.Errorf("%w: %d ids, at most %d per call", ErrBadIDs, len(ids), max)
	}
	seen := make(map[string]struct{}, len(ids))
	out := ids[:0]
	for _, id := range ids {
		if err := mdm.ValidateEnrollmentID(id); err != nil {
			return nil, fmt.Errorf("%w: %q: %w", ErrBadIDs, id, err)
		}
		if _, dup := seen[id]; dup {
			continue
		}
		seen[id] = struct{}{}
		out = append(out, id)
	}
	return out, nil
}

// pushTo pushes to ids and records each result in resp; it returns the
// set of IDs whose push succeeded.
func pushTo(ctx context.Context, p Pusher, ids []string, resp *Response) map[string]bool {
	ok := make(map[string]bool, len(ids))
	if p == nil {
		for _, id := range ids {
			resp.id(id).PushError = ErrPushNotConfigured.Error()
		}
		resp.PushError = ErrPushNotConfigured.Error()
		return ok
	}
	results, err := p.Push(ctx, ids)
	if err != nil {
		resp.PushError = err.Error()
	}
	for _, id := range ids {
		r, found := results[id]
		switch {
		case !found && err != nil:
			resp.id(id).PushError = err.Error()
		case !found:
			resp.id(id).PushError = push.ErrNoPushInfo.Error()
		case r.Err != nil:
			resp.id(id).PushError = r.Err.Error()
		default:
			resp.id(id).PushResult = r.ID
			ok[id] = true
		}
	}
	return ok
}

// statusOf is 200 when all of the total IDs fully succeeded, 500 when
// nothing at all succeeded (anyOK false), and 207 otherwise.
func statusOf(fullOK, total int, anyOK bool) int {
	switch {
	case total > 0 && fullOK == total:
		return http.StatusOK
	case !anyOK:
		return http.StatusInternalServerError
	}
	return http.StatusMultiStatus
}

// EnqueueHandler enqueues a raw command plist to enrollments and pushes
// to them unless the nopush query parameter is set. The IDs are either
// comma-separated at the end of the path (mount it under
// http.StripPrefix) with the plist as the body, or, when the path names
// none, sent as a multipart/form-data body (see readEnqueueForm). An
// empty command only pushes.
func EnqueueHandler(store storage.CommandEnqueuer, opts ...Option) http.Handler {
	o := newOptions(opts)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		logger := log.From(r.Context(), o.logger)
		ids, raw, status, err := readEnqueue(w, r, o)
		if err != nil {
			mdmhttp.WriteJSONError(w, status, err)
			return
		}
		resp := &Response{NoPush: r.URL.Query().Get("nopush") != ""}
		if len(raw) == 0 {
			if resp.NoPush {
				mdmhttp.WriteJSONError(w, http.StatusBadRequest, errors.New("empty body and nopush: nothing to do"))
				return
			}
			pushed := pushTo(r.Context(), o.pusher, ids, resp)
			mdmhttp.WriteJSON(w, statusOf(len(pushed), len(ids), len(pushed) > 0), resp)
			return
		}
		cmd, err := mdm.DecodeCommand(raw)
		if err != nil {
			mdmhttp.WriteJSONError(w, http.StatusBadRequest, err)
			return
		}
		resp.CommandUUID, resp.RequestType = cmd.CommandUUID, cmd.Command.RequestType
		idErrs, err := store.EnqueueCommand(r.Context(), ids, cmd)
		if err != nil {
			logger.Info("msg", "enqueue", "command_uuid", cmd.CommandUUID, "err", err)
			resp.CommandError = err.Error()
			status := http.StatusInternalServerError
			if errors.Is(err, storage.ErrDuplicateCommand) {
				status = http.StatusConflict
			}
			mdmhttp.WriteJSON(w, status, resp)
			return
		}
		enqueued := make([]string, 0, len(ids))
		for _, id := range ids {
			if e := idErrs[id]; e != nil {
				resp.id(id).CommandError = e.Error()
				continue
			}
			enqueued = append(enqueued, id)
		}
		logger.Info("msg", "enqueued command", "command_uuid", cmd.CommandUUID,
			"request_type", cmd.Command.RequestType, "ids", len(ids), "failed", len(ids)-len(enqueued))
		fullOK := len(enqueued)
		if !resp.NoPush && len(enqueued) > 0 {
			fullOK = len(pushTo(r.Context(), o.pusher, enqueued, resp))
		}
		mdmhttp.WriteJSON(w, statusOf(fullOK, len(ids), len(enqueued) > 0), resp)
	})
}

// PushHandler pushes to the comma-separated IDs at the end of the path.
func PushHandler(opts ...Option) http.Handler {
	o := newOptions(opts)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ids, err := parseIDs(r.URL.Path, o.maxIDs)
		if err != nil {
			mdmhttp.WriteJSONError(w, http.StatusBadRequest, err)
			return
		}
		resp := &Response{}
		pushed := pushTo(r.Context(), o.pusher, ids, resp)
		mdmhttp.WriteJSON(w, statusOf(len(pushed), len(ids), len(pushed) > 0), resp)
	})
}
