package mdm

import (
	"context"
	"crypto/x509"
)

// Request is one device request as the services see it: the resolved
// channel, the verified identity certificate and the URL query parameters.
// The HTTP layer builds it once; nothing below it sees HTTP.
type Request struct {
	Context     context.Context
	EnrollID    *EnrollID
	Certificate *x509.Certificate
	Params      map[string]string
}

// Clone returns a shallow copy of r.
func (r *Request) Clone() *Request {
	c := *r
	return &c
}
