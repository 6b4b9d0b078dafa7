// Package push defines the result of sending an APNs notification to an
// enrollment. The APNs provider lives in push/nanopush and the service
// that maps enrollment IDs to providers in push/service.
package push

import "errors"

// Response is the outcome of pushing to one enrollment: the apns-id APNs
// answered with, or the error.
type Response struct {
	ID  string
	Err error
}

// ErrNoPushInfo means an enrollment has no push data (no TokenUpdate yet).
var ErrNoPushInfo = errors.New("push data missing for id")
