package main

import (
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/nanomdm/nanomdm/http/api"
	"github.com/nanomdm/nanomdm/http/authproxy"
	"github.com/nanomdm/nanomdm/log"
	"github.com/nanomdm/nanomdm/service/dmforward"
	"github.com/nanomdm/nanomdm/service/webhook"
)

// integrationsConfig is the flags of the webhook, declarative-management
// forwarding, the auth proxy and escrow key unlock.
type integrationsConfig struct {
	webhookURL       string
	webhookHMACKey   string
	webhookTimeout   time.Duration
	webhookRetries   int
	webhookWorkers   int
	webhookQueueSize int
	webhookMaxAge    time.Duration
	webhookLease     time.Duration
	dm               string
	dmSendHMACKey    string
	dmRecvHMACKey    string
	authProxyURL     string
	escrowURL        string
}

// register adds the integration flags to fs.
func (c *integrationsConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&c.webhookURL, "webhook-url", "", "POST a MicroMDM-compatible JSON event for every check-in and command report to this URL")
	fs.StringVar(&c.webhookHMACKey, "webhook-hmac-key", "", "sign webhook bodies: X-Hmac-Signature = base64(HMAC-SHA256(body)) with this key")
	fs.DurationVar(&c.webhookTimeout, "webhook-timeout", webhook.DefaultTimeout, "time allowed for one webhook delivery attempt")
	fs.IntVar(&c.webhookRetries, "webhook-retries", webhook.DefaultRetries, "retries of a webhook delivery after a connection error or 5xx answer")
	fs.IntVar(&c.webhookWorkers, "webhook-workers", webhook.DefaultWorkers, "webhook deliveries in flight at once")
	fs.IntVar(&c.webhookQueueSize, "webhook-queue-size", webhook.DefaultQueueSize, "webhook events kept in the outbox at most; beyond it the oldest are dropped (logged, counted); 0: no bound")
	fs.DurationVar(&c.webhookMaxAge, "webhook-max-age", webhook.DefaultMaxAge, "drop webhook events older than this from the outbox (logged, counted); 0: no bound")
	fs.DurationVar(&c.webhookLease, "webhook-lease", webhook.DefaultLease, "how long a server reserves the webhook events it is delivering; after a crash another server (or the restarted one) sends them once it ends")
	fs.StringVar(&c.dm, "dm", "", "forward DeclarativeManagement check-ins to this base URL (end it with /)")
	fs.StringVar(&c.dmSendHMACKey, "dm-send-hmac-key", "", "sign requests to the -dm server with this HMAC key (X-Hmac-Signature)")
	fs.StringVar(&c.dmRecvHMACKey, "dm-recv-hmac-key", "", "require answers of the -dm server to be signed with this HMAC key (X-Hmac-Signature)")
	fs.StringVar(&c.authProxyURL, "auth-proxy-url", "", "reverse-proxy /authproxy/ to this URL for enrolled devices (device identity as on /mdm)")
	fs.StringVar(&c.escrowURL, "escrowkeyunlock-url", api.EscrowKeyUnlockURL, "Apple escrow key unlock service used by /v1/escrowkeyunlock")
}

// check validates the integration flags before anything is opened.
func (c *integrationsConfig) check(disableMDM bool) error {
	if c.webhookURL != "" {
		if err := checkHTTPURL(c.webhookURL); err != nil {
			return fmt.Errorf("-webhook-url: %w", err)
		}
	}
	if c.authProxyURL != "" {
		if disableMDM {
			return errors.New("-auth-proxy-url needs the device identity checks of the MDM endpoints: not with -disable-mdm")
		}
		if err := checkHTTPURL(c.authProxyURL); err != nil {
			return fmt.Errorf("-auth-proxy-url: %w", err)
		}
	}
	if (c.dmSendHMACKey != "" || c.dmRecvHMACKey != "") && c.dm == "" {
		return errors.New("-dm-send-hmac-key and -dm-recv-hmac-key need -dm")
	}
	if c.webhookHMACKey != "" && c.webhookURL == "" {
		return errors.New("-webhook-hmac-key needs -webhook-url")
	}
	return nil
}

func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q: want an absolute http or https URL", s)
	}
	return nil
}

// dmForwarder returns the DeclarativeManagement forwarder, or nil
// without -dm. It warns when the base URL lacks a trailing slash.
func (c *integrationsConfig) dmForwarder(logger log.Logger) (*dmforward.Forwarder, error) {
	if c.dm == "" {
		return nil, nil
	}
	opts := []dmforward.Option{dmforward.WithLogger(logger)}
	if c.dmSendHMACKey != "" {
		opts = append(opts, dmforward.WithSendHMACKey([]byte(c.dmSendHMACKey)))
	}
	if c.dmRecvHMACKey != "" {
		opts = append(opts, dmforward.WithRecvHMACKey([]byte(c.dmRecvHMACKey)))
	}
	f, err := dmforward.New(c.dm, opts...)
	if err != nil {
		return nil, fmt.Errorf("-dm: %w", err)
	}
	return f, nil
}

// newWebhook returns the started webhook, or nil without -webhook-url.
// opts are added to those of the flags.
func (c *integrationsConfig) newWebhook(store webhook.Store, logger log.Logger, opts ...webhook.Option) *webhook.Webhook {
	if c.webhookURL == "" {
		return nil
	}
	opts = append([]webhook.Option{
		webhook.WithLogger(logger),
		webhook.WithTimeout(c.webhookTimeout),
		webhook.WithRetries(c.webhookRetries),
		webhook.WithWorkers(c.webhookWorkers),
		webhook.WithQueueSize(c.webhookQueueSize),
		webhook.WithMaxAge(c.webhookMaxAge),
		webhook.WithLease(c.webhookLease),
	}, opts...)
	if c.webhookHMACKey != "" {
		opts = append(opts, webhook.WithHMACKey([]byte(c.webhookHMACKey)))
	}
	return webhook.New(c.webhookURL, store, opts...)
}

// authProxy returns the /authproxy/ handler (prefix stripped, before the
// identity middleware), or nil without -auth-proxy-url. finder finds the
// enrollment of a device's certificate hash.
func (c *integrationsConfig) authProxy(finder authproxy.EnrollmentFinder, logger log.Logger) (http.Handler, error) {
	if c.authProxyURL == "" {
		return nil, nil
	}
	target, err := url.Parse(c.authProxyURL)
	if err != nil {
		return nil, fmt.Errorf("-auth-proxy-url: %w", err)
	}
	return http.StripPrefix("/authproxy", authproxy.New(target, finder, authproxy.WithLogger(logger))), nil
}
