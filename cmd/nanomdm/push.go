package main

import (
	"errors"
	"flag"
	"time"

	"github.com/nanomdm/nanomdm/push/nanopush"
)

// pushConfig is the flags of APNs pushing.
type pushConfig struct {
	workers    int
	timeout    time.Duration
	expiration time.Duration
	sandbox    bool
	url        string
}

// register adds the push flags to fs.
func (p *pushConfig) register(fs *flag.FlagSet) {
	fs.IntVar(&p.workers, "push-workers", nanopush.DefaultWorkers, "most APNs requests in flight per push certificate")
	fs.DurationVar(&p.timeout, "push-timeout", nanopush.DefaultTimeout, "time allowed for one APNs request, and for connecting to APNs")
	fs.DurationVar(&p.expiration, "push-expiration", 0, "how long APNs keeps an undeliverable push (apns-expiration); 0 sends no header and lets APNs decide")
	fs.BoolVar(&p.sandbox, "apns-sandbox", false, "push through the APNs development server "+nanopush.Sandbox)
	fs.StringVar(&p.url, "apns-url", "", "APNs base URL (https://host[:port]); default "+nanopush.Production)
}

// factory checks the push flags and returns the provider factory they
// describe.
func (p *pushConfig) factory() (*nanopush.Factory, error) {
	opts := []nanopush.Option{
		nanopush.WithWorkers(p.workers),
		nanopush.WithTimeout(p.timeout),
		nanopush.WithExpiration(p.expiration),
	}
	switch {
	case p.sandbox && p.url != "":
		return nil, errors.New("-apns-sandbox and -apns-url both set: give one")
	case p.sandbox:
		opts = append(opts, nanopush.WithBaseURL(nanopush.Sandbox))
	case p.url != "":
		opts = append(opts, nanopush.WithBaseURL(p.url))
	}
	return nanopush.NewFactory(opts...)
}
