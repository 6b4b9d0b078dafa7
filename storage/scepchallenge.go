package storage

import (
	"context"
	"time"
)

// SCEPChallengeStore keeps the one-time challenges of the embedded SCEP
// server, so that every server instance sharing the storage accepts a
// challenge another one minted, and only once. Keys are what the SCEP
// server passes (a hash of the challenge, never the challenge itself);
// backends treat them as opaque strings of at most 64 bytes.
type SCEPChallengeStore interface {
	// StoreSCEPChallenge records key as valid until expires. Storing a
	// key that is already stored replaces its expiry. A backend may use
	// the call to drop expired keys.
	StoreSCEPChallenge(ctx context.Context, key string, expires time.Time) error

	// ConsumeSCEPChallenge removes key and reports whether it was stored
	// and not yet expired. Of concurrent calls for one key, on one
	// instance or several, at most one reports true. An unknown, already
	// consumed or expired key reports false and no error.
	ConsumeSCEPChallenge(ctx context.Context, key string) (bool, error)
}
