package scep

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"time"

	mdmhttp "github.com/nanomdm/nanomdm/http"
	"github.com/nanomdm/nanomdm/log"
	"github.com/nanomdm/nanomdm/storage"
)

// DefaultChallengeTTL is how long a one-time challenge stays valid unless
// NewChallenges is told otherwise: long enough to install a downloaded
// profile, short enough that a leaked one soon expires.
const DefaultChallengeTTL = time.Hour

// ErrNoChallengeStore means one-time challenges were asked of Challenges
// that has no storage for them.
var ErrNoChallengeStore = errors.New("one-time challenges need a challenge store")

// Challenges decides which SCEP challenge passwords are good: the static
// one, if set, and the one-time ones it minted, kept in storage (by their
// SHA-256 only) so that every server instance sharing the storage accepts
// each once.
type Challenges struct {
	static string
	store  storage.SCEPChallengeStore
	ttl    time.Duration
	now    func() time.Time
}

// NewChallenges returns Challenges accepting static (empty: none) and the
// one-time challenges minted into store (nil: none), valid for ttl (0 or
// less: DefaultChallengeTTL).
func NewChallenges(static string, store storage.SCEPChallengeStore, ttl time.Duration) *Challenges {
	if ttl <= 0 {
		ttl = DefaultChallengeTTL
	}
	return &Challenges{static: static, store: store, ttl: ttl, now: time.Now}
}

func challengeKey(challenge string) string {
	h := sha256.Sum256([]byte(challenge))
	return hex.EncodeToString(h[:])
}

// Mint creates a one-time challenge and returns it with its expiry.
func (c *Challenges) Mint(ctx context.Context) (string, time.Time, error) {
	if c.store == nil {
		return "", time.Time{}, ErrNoChallengeStore
	}
	var b [16]byte
	rand.Read(b[:])
	challenge := hex.EncodeToString(b[:])
	expires := c.now().Add(c.ttl)
	if err := c.store.StoreSCEPChallenge(ctx, challengeKey(challenge), expires); err != nil {
		return "", time.Time{}, fmt.Errorf("minting challenge: %w", err)
	}
	return challenge, expires, nil
}

// ForProfile returns the challenge an enrollment profile carries: the
// static one when there is one, else a fresh one-time challenge.
func (c *Challenges) ForProfile(ctx context.Context) (string, error) {
	if c.static != "" {
		return c.static, nil
	}
	challenge, _, err := c.Mint(ctx)
	return challenge, err
}

// Check reports whether challenge is good, consuming it if it is a
// one-time challenge. An empty challenge is never good.
func (c *Challenges) Check(ctx context.Context, challenge string) (bool, error) {
	if challenge == "" {
		return false, nil
	}
	if c.static != "" && subtle.ConstantTimeCompare([]byte(challenge), []byte(c.static)) == 1 {
		return true, nil
	}
	if c.store == nil {
		return false, nil
	}
	ok, err := c.store.ConsumeSCEPChallenge(ctx, challengeKey(challenge))
	if err != nil {
		return false, fmt.Errorf("consuming challenge: %w", err)
	}
	return ok, nil
}

// ChallengeResponse is the answer of ChallengeHandler.
type ChallengeResponse struct {
	Challenge string    `json:"challenge"`
	ExpiresAt time.Time `json:"expires_at"`
}

// ChallengeHandler mints a one-time challenge on each request and answers
// it as JSON. Authentication is the caller's (the API's Basic auth).
func ChallengeHandler(c *Challenges, logger log.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		challenge, expires, err := c.Mint(r.Context())
		if err != nil {
			log.From(r.Context(), logger).Info("msg", "minting challenge", "err", err)
			mdmhttp.WriteJSONError(w, http.StatusInternalServerError, err)
			return
		}
		mdmhttp.WriteJSON(w, http.StatusOK, &ChallengeResponse{Challenge: challenge, ExpiresAt: expires.UTC()})
	})
}
