package cryptoutil

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"
)

// This file holds what the tests compare the CMS parser with: the pkcs7
// library it replaced, used the way the server used it, and a small CMS
// encoder that builds the messages pkcs7 cannot (odd algorithms, wrong
// digests, several signers).

// farFuture is later than any certificate's NotAfter.
var farFuture = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

// pkcs7Verify is the reference: how the server checked a signature with
// pkcs7 before this package had its own parser. It parses der, requires one
// signer whose certificate the message carries, and verifies over body
// with the signing time ignored. A panic in the library counts as a
// refusal.
func pkcs7Verify(der, body []byte) (cert *x509.Certificate, err error) {
	defer func() {
		if r := recover(); r != nil {
			cert, err = nil, fmt.Errorf("pkcs7 panicked: %v", r)
		}
	}()
	p7, err := pkcs7.Parse(der)
	if err != nil {
		return nil, err
	}
	if n := len(p7.Signers); n != 1 {
		return nil, fmt.Errorf("%d signers", n)
	}
	signer := p7.GetOnlySigner()
	if signer == nil {
		return nil, errors.New("no certificate for the signer")
	}
	p7.Content = body
	if err := verifyIgnoringValidity(p7); err != nil {
		return nil, err
	}
	return signer, nil
}

// verifyIgnoringValidity verifies the signatures in p7 without comparing a
// signing-time attribute to the signer certificate's validity period.
//
// The pkcs7 library rejects a message whose signing-time attribute lies
// outside the signer's NotBefore..NotAfter, and offers no way to turn that
// off; the server never wanted that check (the signing time is the
// device's claim, and certverify checks validity at the server's time).
// The signature is therefore checked against copies of the certificates
// whose validity period is unbounded. Only the validity fields differ, so
// signer lookup (issuer and serial) and the key are unchanged.
func verifyIgnoringValidity(p7 *pkcs7.PKCS7) error {
	original := p7.Certificates
	unbounded := make([]*x509.Certificate, len(original))
	for i, c := range original {
		cp := *c
		cp.NotBefore = time.Time{}
		cp.NotAfter = farFuture
		unbounded[i] = &cp
	}
	p7.Certificates = unbounded
	defer func() { p7.Certificates = original }()
	return p7.Verify()
}

// Object identifiers the encoder below uses that pkcs7 does not export.
var (
	oidTestECPublicKey = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidTestMD5         = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 5}
	oidTestRSAPSS      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 10}
)

// tlv encodes one definite-length element with the given identifier octet
// around the concatenation of parts.
func tlv(ident byte, parts ...[]byte) []byte {
	content := bytes.Join(parts, nil)
	return append(encodeDefiniteHeader(ident, len(content)), content...)
}

// mustMarshal is asn1.Marshal for values that always encode.
func mustMarshal(v any) []byte {
	der, err := asn1.Marshal(v)
	if err != nil {
		panic(err)
	}
	return der
}

// algorithm encodes an AlgorithmIdentifier with NULL parameters.
func algorithm(oid asn1.ObjectIdentifier) []byte {
	return tlv(berSequence, mustMarshal(oid), []byte{0x05, 0x00})
}

// cmsSigner describes one SignerInfo for buildCMS.
type cmsSigner struct {
	signer
	hash   crypto.Hash           // digest of content and of what is signed
	digest asn1.ObjectIdentifier // digestAlgorithm; nil: the OID of hash
	sigAlg asn1.ObjectIdentifier // signatureAlgorithm; nil: rsaEncryption or ecdsa-with-<hash>
	// attrs adds signed attributes: content type and message digest.
	attrs bool
	// messageDigest replaces the digest of the body in the attribute.
	messageDigest []byte
	// contentType replaces id-data in the content-type attribute.
	contentType asn1.ObjectIdentifier
	// unsorted sends the attributes out of DER order; signUnsorted
	// also signs them in that order rather than in DER's.
	unsorted, signUnsorted bool
	// ski identifies the signer by subject key identifier.
	ski bool
}

// cmsMessage describes a SignedData for buildCMS.
type cmsMessage struct {
	signers []cmsSigner
	certs   []*x509.Certificate // nil: the first signer's
	content []byte              // embedded content; nil: detached
}

// hashOIDs are the digest algorithm and ecdsa-with-<hash> identifiers of
// each hash the tests sign with.
var hashOIDs = map[crypto.Hash]struct{ digest, ecdsa asn1.ObjectIdentifier }{
	crypto.SHA1:   {pkcs7.OIDDigestAlgorithmSHA1, pkcs7.OIDDigestAlgorithmECDSASHA1},
	crypto.SHA256: {pkcs7.OIDDigestAlgorithmSHA256, pkcs7.OIDDigestAlgorithmECDSASHA256},
	crypto.SHA384: {pkcs7.OIDDigestAlgorithmSHA384, pkcs7.OIDDigestAlgorithmECDSASHA384},
	crypto.SHA512: {pkcs7.OIDDigestAlgorithmSHA512, pkcs7.OIDDigestAlgorithmECDSASHA512},
}

// digestOID returns the digest algorithm identifier of h.
func digestOID(h crypto.Hash) asn1.ObjectIdentifier { return hashOIDs[h].digest }

// ecdsaOID returns ecdsa-with-<h>.
func ecdsaOID(h crypto.Hash) asn1.ObjectIdentifier { return hashOIDs[h].ecdsa }

// hashOf returns the digest of data with h.
func hashOf(h crypto.Hash, data []byte) []byte {
	w := h.New()
	w.Write(data)
	return w.Sum(nil)
}

// buildCMS encodes a ContentInfo holding a SignedData of body, in DER,
// signed as m says.
func buildCMS(tb testing.TB, body []byte, m cmsMessage) []byte {
	tb.Helper()
	var infos [][]byte
	var digests [][]byte
	for _, s := range m.signers {
		digest := s.digest
		if digest == nil {
			digest = digestOID(s.hash)
		}
		sigAlg := s.sigAlg
		if sigAlg == nil {
			if _, ok := s.key.Public().(*rsa.PublicKey); ok {
				sigAlg = pkcs7.OIDEncryptionAlgorithmRSA
			} else {
				sigAlg = ecdsaOID(s.hash)
			}
		}
		digests = append(digests, algorithm(digest))

		signed := body
		var attrField []byte
		if s.attrs {
			md := s.messageDigest
			if md == nil {
				md = hashOf(s.hash, body)
			}
			ct := s.contentType
			if ct == nil {
				ct = pkcs7.OIDData
			}
			attrs := [][]byte{
				tlv(berSequence, mustMarshal(pkcs7.OIDAttributeContentType), tlv(berSet, mustMarshal(ct))),
				tlv(berSequence, mustMarshal(pkcs7.OIDAttributeMessageDigest), tlv(berSet, tlv(berOctetString, md))),
			}
			sorted := slices.Clone(attrs)
			slices.SortFunc(sorted, bytes.Compare)
			if slices.EqualFunc(sorted, attrs, bytes.Equal) {
				slices.Reverse(attrs) // unsorted now
			}
			sent, signedOrder := sorted, sorted
			if s.unsorted {
				sent = attrs
				if s.signUnsorted {
					signedOrder = attrs
				}
			}
			attrField = tlv(berContext0, sent...)
			signed = tlv(berSet, signedOrder...)
		}
		sig, err := s.key.Sign(rand.Reader, hashOf(s.hash, signed), s.hash)
		if err != nil {
			tb.Fatalf("signing: %v", err)
		}
		version := []byte{0x02, 0x01, 0x01}
		sid := tlv(berSequence, s.cert.RawIssuer, mustMarshal(s.cert.SerialNumber))
		if s.ski {
			version = []byte{0x02, 0x01, 0x03}
			sid = tlv(0x80, bytes.Repeat([]byte{0x5a}, 20))
		}
		infos = append(infos, tlv(berSequence, version, sid, algorithm(digest), attrField,
			algorithm(sigAlg), tlv(berOctetString, sig)))
	}

	certs := m.certs
	if certs == nil && len(m.signers) > 0 {
		certs = []*x509.Certificate{m.signers[0].cert}
	}
	var rawCerts [][]byte
	for _, c := range certs {
		rawCerts = append(rawCerts, c.Raw)
	}
	var eContent []byte
	if m.content != nil {
		eContent = tlv(berContext0, tlv(berOctetString, m.content))
	}
	sd := tlv(berSequence,
		[]byte{0x02, 0x01, 0x01},
		tlv(berSet, digests...),
		tlv(berSequence, mustMarshal(pkcs7.OIDData), eContent),
		tlv(berContext0, rawCerts...),
		tlv(berSet, infos...),
	)
	return tlv(berSequence, mustMarshal(pkcs7.OIDSignedData), tlv(berContext0, sd))
}

// signWithPKCS7 signs body with pkcs7 as the simulator does, with the
// given digest, with or without signed attributes, and returns the DER.
func signWithPKCS7(tb testing.TB, s signer, body []byte, digest asn1.ObjectIdentifier, attrs bool) []byte {
	tb.Helper()
	sd, err := pkcs7.NewSignedData(body)
	if err != nil {
		tb.Fatalf("NewSignedData: %v", err)
	}
	sd.SetDigestAlgorithm(digest)
	if attrs {
		err = sd.AddSigner(s.cert, s.key, pkcs7.SignerInfoConfig{})
	} else {
		err = sd.SignWithoutAttr(s.cert, s.key, pkcs7.SignerInfoConfig{})
	}
	if err != nil {
		tb.Fatalf("signing: %v", err)
	}
	sd.Detach()
	der, err := sd.Finish()
	if err != nil {
		tb.Fatalf("Finish: %v", err)
	}
	return der
}

// toIndefinite re-encodes the outer layers of a DER SignedData the way
// Apple devices send them: ContentInfo, its [0], the SignedData and the
// encapsulated content info with indefinite lengths, and the rest as is.
func toIndefinite(tb testing.TB, der []byte) []byte {
	tb.Helper()
	indef := func(ident byte, parts ...[]byte) []byte {
		out := []byte{ident, 0x80}
		for _, p := range parts {
			out = append(out, p...)
		}
		return append(out, 0, 0)
	}
	children := func(e berElement) [][]byte {
		var out [][]byte
		for r := e.children(); !r.empty(); {
			c, err := r.next()
			if err != nil {
				tb.Fatalf("re-encoding: %v", err)
			}
			out = append(out, c.full)
		}
		return out
	}
	r := berReader{rest: der}
	info, err := r.next()
	if err != nil {
		tb.Fatalf("re-encoding: %v", err)
	}
	top := children(info)
	wrap, _ := (&berReader{rest: top[1]}).next()
	sd, _ := (&berReader{rest: wrap.content}).next()
	fields := children(sd)
	encap, _ := (&berReader{rest: fields[2]}).next()
	fields[2] = indef(berSequence, children(encap)...)
	return indef(berSequence, top[0], indef(berContext0, indef(berSequence, fields...)))
}
