package metrics

import (
	"context"
	"errors"
	"os"

	"github.com/nanomdm/nanomdm/push"
	"github.com/nanomdm/nanomdm/push/nanopush"
	"github.com/nanomdm/nanomdm/storage"
)

// Pusher pushes to enrollments by ID (the API's pusher, push/service).
type Pusher interface {
	Push(ctx context.Context, ids []string) (map[string]*push.Response, error)
}

type pusher struct {
	next Pusher
	m    *Metrics
}

// Pusher returns a Pusher that counts the result of every push next
// makes: sent, or failed with a reason.
func (m *Metrics) Pusher(next Pusher) Pusher { return &pusher{next: next, m: m} }

func (p *pusher) Push(ctx context.Context, ids []string) (map[string]*push.Response, error) {
	results, err := p.next.Push(ctx, ids)
	if err != nil && len(results) == 0 {
		// Nothing was pushed: the push data could not be read.
		p.m.pushFailures.WithLabelValues("storage").Add(float64(len(ids)))
		return results, err
	}
	for _, r := range results {
		switch {
		case r == nil:
		case r.Err == nil:
			p.m.pushesSent.Inc()
		default:
			p.m.pushFailures.WithLabelValues(PushFailureReason(r.Err)).Inc()
		}
	}
	return results, err
}

// apnsReasons are the reasons APNs documents; any other is "apns_other".
var apnsReasons = []string{
	"BadCollapseId", "BadDeviceToken", "BadExpirationDate", "BadMessageId", "BadPriority",
	"BadTopic", "DeviceTokenNotForTopic", "DuplicateHeaders", "IdleTimeout", "InvalidPushType",
	"MissingDeviceToken", "MissingTopic", "PayloadEmpty", "TopicDisallowed", "BadCertificate",
	"BadCertificateEnvironment", "ExpiredProviderToken", "Forbidden", "InvalidProviderToken",
	"MissingProviderToken", "UnrelatedKeyIdInToken", "BadEnvironmentKeyIdInToken", "BadPath",
	"MethodNotAllowed", "ExpiredToken", "Unregistered", "PayloadTooLarge",
	"TooManyProviderTokenUpdates", "TooManyRequests", "InternalServerError", "ServiceUnavailable",
	"Shutdown",
}

// PushFailureReason names the cause of a failed push with a value from a
// fixed set: the APNs reason (such as BadDeviceToken or Unregistered),
// "apns_other" for an APNs answer without a known reason, or what kept
// the push from being sent: no_push_info, no_push_cert, unresponsive,
// timeout, canceled, provider_closed, other.
func PushFailureReason(err error) string {
	var apnsErr *nanopush.Error
	switch {
	case errors.As(err, &apnsErr):
		if apnsErr.Reason == "" && apnsErr.StatusCode == 410 {
			return "Unregistered"
		}
		if r := label(apnsErr.Reason, apnsReasons); r != "other" {
			return r
		}
		return "apns_other"
	case errors.Is(err, push.ErrNoPushInfo):
		return "no_push_info"
	case errors.Is(err, storage.ErrNoPushCert):
		return "no_push_cert"
	case errors.Is(err, nanopush.ErrUnresponsive):
		return "unresponsive"
	case errors.Is(err, nanopush.ErrClosed):
		return "provider_closed"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "other"
}
