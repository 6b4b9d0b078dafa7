package cryptoutil

import (
	"bytes"
	"crypto/x509"
	"errors"
	"hash/maphash"
	"sync"
)

// Bounds of the certificate cache. A device signs every request with the
// same certificate, so parsing it once per device rather than once per
// request saves most of the parse. The bounds keep what a client can make
// the server hold small: anyone can send a signature carrying a fresh
// self-signed certificate (trust is checked later, by certverify), so the
// cache is filled by strangers as easily as by devices. A parsed
// certificate takes about four and a half times its DER size in memory
// (3.6 KiB for an 800-byte RSA-2048 device identity), so a full cache holds
// about 40 MiB whatever the certificates.
const (
	// certCacheEntries is the most certificates the cache holds.
	certCacheEntries = 10000
	// certCacheBytes is the most bytes of DER the cache holds: room for
	// 10,000 typical device identities, or fewer larger certificates.
	certCacheBytes = 8 << 20
	// maxCachedCertSize is the largest certificate, in bytes of DER, the
	// cache keeps. Device identities are one or two KiB; a larger one is
	// parsed on every request but never held.
	maxCachedCertSize = 4 << 10
)

// parsedCerts caches the certificates found in Mdm-Signature headers.
var parsedCerts = newCertCache(certCacheEntries, certCacheBytes)

// cachedCert is a parsed certificate and what the signer lookup needs of it.
type cachedCert struct {
	cert *x509.Certificate
	// serial is the content octets of the serialNumber INTEGER, in the
	// minimal two's complement form DER requires, so that comparing bytes
	// compares numbers.
	serial []byte
}

// certCache maps a certificate's DER bytes to its parsed form. It holds at
// most limit entries and byteLimit bytes of DER; when it is full,
// arbitrary entries (the first the map's randomised iteration yields)
// make room for the new one. It is safe for concurrent use.
//
// The certificates it returns are shared by every request that carries
// the same bytes, so nobody may modify them.
type certCache struct {
	seed      maphash.Seed
	limit     int
	byteLimit int
	mu        sync.RWMutex
	entries   map[uint64]*cachedCert
	bytes     int // DER bytes of the entries
}

// newCertCache returns an empty cache of at most limit entries and
// byteLimit bytes of DER.
func newCertCache(limit, byteLimit int) *certCache {
	return &certCache{
		seed:      maphash.MakeSeed(),
		limit:     limit,
		byteLimit: byteLimit,
		entries:   make(map[uint64]*cachedCert),
	}
}

// parse returns the certificate whose DER encoding is der, parsing it with
// crypto/x509 unless the cache already holds it. der is not retained: a
// certificate that is cached is parsed from a copy, so it does not keep
// the rest of the message alive.
func (c *certCache) parse(der []byte) (*cachedCert, error) {
	key := maphash.Bytes(c.seed, der)
	c.mu.RLock()
	e := c.entries[key]
	c.mu.RUnlock()
	// The key is a 64-bit hash with a secret random seed: a collision is
	// unlikely and cannot be aimed at, but the bytes are compared anyway.
	if e != nil && bytes.Equal(e.cert.Raw, der) {
		return e, nil
	}

	if len(der) > maxCachedCertSize {
		return parseCachedCert(der)
	}
	e, err := parseCachedCert(bytes.Clone(der))
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.entries[key]; ok {
		// Parsed by another request meanwhile, or a hash collision.
		c.remove(key, old)
	}
	for len(c.entries) > 0 && (len(c.entries) >= c.limit || c.bytes+len(der) > c.byteLimit) {
		for k, old := range c.entries {
			c.remove(k, old)
			break
		}
	}
	if len(der) <= c.byteLimit {
		c.entries[key] = e
		c.bytes += len(der)
	}
	return e, nil
}

// remove drops one entry; c.mu must be held.
func (c *certCache) remove(key uint64, e *cachedCert) {
	delete(c.entries, key)
	c.bytes -= len(e.cert.Raw)
}

// len returns the number of cached certificates.
func (c *certCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}

// parseCachedCert parses one DER certificate and finds its serial number's
// encoding.
func parseCachedCert(der []byte) (*cachedCert, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	serial, err := tbsSerial(cert.RawTBSCertificate)
	if err != nil {
		// crypto/x509 has just read the same field, so this cannot
		// happen short of a bug.
		return nil, err
	}
	return &cachedCert{cert: cert, serial: serial}, nil
}

// tbsSerial returns the content octets of the serialNumber in a DER
// TBSCertificate: SEQUENCE { [0] EXPLICIT version OPTIONAL, serialNumber
// INTEGER, ... }.
func tbsSerial(tbs []byte) ([]byte, error) {
	r := berReader{rest: tbs}
	seq, err := r.expect(berSequence, "tbs certificate")
	if err != nil {
		return nil, err
	}
	fields := seq.children()
	if fields.peek() == berContext0 {
		if _, err := fields.next(); err != nil {
			return nil, err
		}
	}
	serial, err := fields.expect(berInteger, "certificate serial number")
	if err != nil {
		return nil, err
	}
	if len(serial.content) == 0 {
		return nil, errors.New("empty certificate serial number")
	}
	return serial.content, nil
}
