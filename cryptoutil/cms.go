package cryptoutil

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"
	"strconv"
)

// This file reads the CMS SignedData (RFC 5652) of an Mdm-Signature and
// checks its signature, in place of github.com/smallstep/pkcs7, which
// converted the whole message from BER to DER and decoded it with
// encoding/asn1 before anything could be looked at. Here the message is
// checked once (checkCMSEncoding), then read where it lies, indefinite
// lengths included, and only the parts that are used are decoded.
//
// What is accepted is what pkcs7 accepted, minus oddities no signer
// produces; the tests compare the two. The differences, all refusals of
// messages pkcs7 took:
//
//   - BER that pkcs7 itself misreads or refuses: empty indefinite-length
//     elements, long-form lengths with a leading zero (see
//     checkCMSEncoding); high tag numbers that are not minimal, or an
//     end-of-contents marker outside an indefinite-length element.
//   - Anything after the last field of a SEQUENCE (encoding/asn1 skips
//     it), a missing version field (pkcs7 defaults it), a signer's
//     issuer that is not a Name, attribute values that are not a SET,
//     and a signedAttrs field that is present but empty (pkcs7 takes it
//     for absent; RFC 5652 makes it SIZE (1..MAX)).
//   - BER lengths in the parts used byte for byte: a certificate (parsed
//     by crypto/x509, which wants DER), the signer's issuer name (compared
//     with the certificate's), the signed attributes (RFC 5652 signs
//     their DER encoding); pkcs7 re-encoded the whole message in DER
//     first. Devices send all three in DER, with BER only around them.
//   - A digestAlgorithm that is not SHA-1, SHA-256, SHA-384 or SHA-512
//     (pkcs7 also took some signature algorithm identifiers there).
//   - Signed attributes with more than one message-digest or
//     content-type attribute or value, or a content-type attribute that
//     differs from the content type (RFC 5652 11.1, 11.2; pkcs7 does not
//     look at content-type and takes the first message digest).
//   - A CRL field that is not DER (pkcs7 decoded it with encoding/asn1
//     after its conversion, and failed on a malformed one; so does this
//     code, without the conversion).
//
// Kept as pkcs7 has them: content embedded in the message is ignored and
// the signature checked over the request body; signed attributes are
// signed in DER order, sorted if they arrive unsorted; the signature
// algorithm is derived from digestAlgorithm and signatureAlgorithm as
// pkcs7's getSignatureAlgorithm does; a signer is only found by issuer
// and serial number, not by subject key identifier; signing time is not
// compared with anything.

// Object identifiers, as the content octets of their DER encoding.
var (
	oidSignedData    = oidBytes(1, 2, 840, 113549, 1, 7, 2)
	oidContentType   = oidBytes(1, 2, 840, 113549, 1, 9, 3)
	oidMessageDigest = oidBytes(1, 2, 840, 113549, 1, 9, 4)

	oidSHA1   = oidBytes(1, 3, 14, 3, 2, 26)
	oidSHA256 = oidBytes(2, 16, 840, 1, 101, 3, 4, 2, 1)
	oidSHA384 = oidBytes(2, 16, 840, 1, 101, 3, 4, 2, 2)
	oidSHA512 = oidBytes(2, 16, 840, 1, 101, 3, 4, 2, 3)

	oidRSA       = oidBytes(1, 2, 840, 113549, 1, 1, 1)
	oidRSASHA1   = oidBytes(1, 2, 840, 113549, 1, 1, 5)
	oidRSASHA256 = oidBytes(1, 2, 840, 113549, 1, 1, 11)
	oidRSASHA384 = oidBytes(1, 2, 840, 113549, 1, 1, 12)
	oidRSASHA512 = oidBytes(1, 2, 840, 113549, 1, 1, 13)

	oidECDSASHA1   = oidBytes(1, 2, 840, 10045, 4, 1)
	oidECDSASHA256 = oidBytes(1, 2, 840, 10045, 4, 3, 2)
	oidECDSASHA384 = oidBytes(1, 2, 840, 10045, 4, 3, 3)
	oidECDSASHA512 = oidBytes(1, 2, 840, 10045, 4, 3, 4)
	oidCurveP256   = oidBytes(1, 2, 840, 10045, 3, 1, 7)
	oidCurveP384   = oidBytes(1, 3, 132, 0, 34)
	oidCurveP521   = oidBytes(1, 3, 132, 0, 35)
)

// oidBytes returns the content octets of the DER encoding of an object
// identifier.
func oidBytes(arcs ...int) []byte {
	der, err := asn1.Marshal(asn1.ObjectIdentifier(arcs))
	if err != nil {
		panic(err) // only called on the constants above
	}
	return der[2:]
}

// signedData is the part of a CMS SignedData with one signer that the
// signature check needs. Every slice points into the decoded header.
type signedData struct {
	signer *x509.Certificate
	// contentType is eContentType, as OID content octets.
	contentType []byte
	// digestAlgorithm and signatureAlgorithm are the signer's algorithm
	// OIDs, as content octets.
	digestAlgorithm    []byte
	signatureAlgorithm []byte
	// signedAttrs is the content of the signer's signedAttrs (the
	// attributes one after the other), nil when it has none.
	signedAttrs []byte
	// attrsSorted reports signedAttrs already in DER (SET OF) order.
	attrsSorted bool
	signature   []byte
}

// parseSignedData reads a ContentInfo holding a SignedData with exactly one
// signer, whose certificate the message carries, into out. Errors name the
// part that is wrong; the caller adds the context.
func parseSignedData(der []byte, out *signedData) error {
	if err := checkCMSEncoding(der); err != nil {
		return err
	}

	// ContentInfo ::= SEQUENCE { contentType, content [0] EXPLICIT ANY }
	top := berReader{rest: der}
	info, err := top.expect(berSequence, "content info")
	if err != nil {
		return err
	}
	fields := info.children()
	contentType, err := fields.expect(berOID, "content type")
	if err != nil {
		return err
	}
	if !bytes.Equal(contentType.content, oidSignedData) {
		return fmt.Errorf("content type %s, want signed-data", oidString(contentType.content))
	}
	wrapper, err := fields.expect(berContext0, "content")
	if err != nil {
		return err
	}
	if !fields.empty() {
		return errors.New("data after the content of the content info")
	}
	inner := wrapper.children()
	sd, err := inner.expect(berSequence, "signed data")
	if err != nil {
		return err
	}
	if !inner.empty() {
		return errors.New("data after the signed data")
	}

	// SignedData ::= SEQUENCE { version, digestAlgorithms SET OF,
	// encapContentInfo, certificates [0] IMPLICIT OPTIONAL,
	// crls [1] IMPLICIT OPTIONAL, signerInfos SET OF }
	fields = sd.children()
	if err := readVersion(&fields, "signed data version"); err != nil {
		return err
	}
	digests, err := fields.expect(berSet, "digest algorithms")
	if err != nil {
		return err
	}
	for r := digests.children(); !r.empty(); {
		if _, err := readAlgorithm(&r, "digest algorithm"); err != nil {
			return err
		}
	}
	if out.contentType, err = readEncapContentInfo(&fields); err != nil {
		return err
	}
	// Room for the usual one or two certificates without an allocation.
	var certBuf [4]*cachedCert
	certs := certBuf[:0]
	if fields.peek() == berContext0 {
		e, err := fields.next()
		if err != nil {
			return fmt.Errorf("certificates: %w", err)
		}
		for r := e.children(); !r.empty(); {
			c, err := r.next()
			if err == nil {
				var cc *cachedCert
				if cc, err = parsedCerts.parse(c.full); err == nil {
					certs = append(certs, cc)
				}
			}
			if err != nil {
				return fmt.Errorf("certificate %d: %w", len(certs)+1, err)
			}
		}
	}
	if fields.peek() == berContext1 {
		e, err := fields.next()
		if err == nil {
			err = checkCRLs(e.full)
		}
		if err != nil {
			return fmt.Errorf("crls: %w", err)
		}
	}
	signers, err := fields.expect(berSet, "signer infos")
	if err != nil {
		return err
	}
	if !fields.empty() {
		return errors.New("data after the signer infos")
	}
	r := signers.children()
	n := 0
	var signer berElement
	for ; !r.empty(); n++ {
		if signer, err = r.next(); err != nil {
			return fmt.Errorf("signer info: %w", err)
		}
	}
	if n != 1 {
		return fmt.Errorf("%d signers, want 1", n)
	}
	if signer.ident != berSequence {
		return fmt.Errorf("signer info: identifier %#02x, want %#02x", signer.ident, berSequence)
	}
	issuer, serial, err := readSignerInfo(signer, out)
	if err != nil {
		return err
	}

	for _, c := range certs {
		if bytes.Equal(c.serial, serial) && bytes.Equal(c.cert.RawIssuer, issuer) {
			out.signer = c.cert
			break
		}
	}
	if out.signer == nil {
		return errors.New("no certificate for the signer")
	}
	return nil
}

// readEncapContentInfo reads EncapsulatedContentInfo ::= SEQUENCE {
// eContentType, eContent [0] EXPLICIT OCTET STRING OPTIONAL } and returns
// eContentType. A Mdm-Signature is detached, but content that is there
// anyway is tolerated and ignored, as pkcs7 did: the signature is checked
// over the request body.
func readEncapContentInfo(r *berReader) ([]byte, error) {
	e, err := r.expect(berSequence, "encapsulated content info")
	if err != nil {
		return nil, err
	}
	fields := e.children()
	contentType, err := readOID(&fields, "encapsulated content type")
	if err != nil {
		return nil, err
	}
	if fields.peek() == berContext0 {
		if _, err := fields.next(); err != nil {
			return nil, fmt.Errorf("encapsulated content: %w", err)
		}
	}
	if !fields.empty() {
		return nil, errors.New("data after the encapsulated content")
	}
	return contentType, nil
}

// readSignerInfo reads SignerInfo ::= SEQUENCE { version, sid,
// digestAlgorithm, signedAttrs [0] IMPLICIT OPTIONAL, signatureAlgorithm,
// signature OCTET STRING, unsignedAttrs [1] IMPLICIT OPTIONAL } into out,
// and returns the issuer (whole encoding) and serial number (content
// octets) that identify the signer's certificate.
func readSignerInfo(e berElement, out *signedData) (issuer, serial []byte, err error) {
	fields := e.children()
	if err := readVersion(&fields, "signer version"); err != nil {
		return nil, nil, err
	}
	if fields.peek() == 0x80 {
		return nil, nil, errors.New("signer identified by subject key identifier, which is not supported")
	}
	sid, err := fields.expect(berSequence, "signer issuer and serial number")
	if err != nil {
		return nil, nil, err
	}
	sidFields := sid.children()
	name, err := sidFields.expect(berSequence, "signer issuer")
	if err != nil {
		return nil, nil, err
	}
	sn, err := sidFields.expect(berInteger, "signer serial number")
	if err != nil {
		return nil, nil, err
	}
	if !validInteger(sn.content) {
		return nil, nil, errors.New("signer serial number: malformed integer")
	}
	if !sidFields.empty() {
		return nil, nil, errors.New("data after the signer serial number")
	}
	if out.digestAlgorithm, err = readAlgorithm(&fields, "signer digest algorithm"); err != nil {
		return nil, nil, err
	}
	if fields.peek() == berContext0 {
		attrs, err := fields.next()
		if err != nil {
			return nil, nil, fmt.Errorf("signed attributes: %w", err)
		}
		if out.attrsSorted, err = checkSignedAttributes(attrs); err != nil {
			return nil, nil, fmt.Errorf("signed attributes: %w", err)
		}
		out.signedAttrs = attrs.content
	}
	if out.signatureAlgorithm, err = readAlgorithm(&fields, "signature algorithm"); err != nil {
		return nil, nil, err
	}
	if fields.peek() == berOctetString|0x20 {
		return nil, nil, errors.New("signature: constructed octet string")
	}
	sig, err := fields.expect(berOctetString, "signature")
	if err != nil {
		return nil, nil, err
	}
	out.signature = sig.content
	if fields.peek() == berContext1 {
		attrs, err := fields.next()
		if err == nil {
			for r := attrs.children(); !r.empty() && err == nil; {
				_, _, err = readAttribute(&r)
			}
		}
		if err != nil {
			return nil, nil, fmt.Errorf("unsigned attributes: %w", err)
		}
	}
	if !fields.empty() {
		return nil, nil, errors.New("data after the signer's attributes")
	}
	return name.full, sn.content, nil
}

// checkSignedAttributes checks the shape of signedAttrs: one or more
// attributes, each in DER since their DER encoding is what was signed. It
// reports whether they are in DER's SET OF order.
func checkSignedAttributes(attrs berElement) (sorted bool, err error) {
	sorted = true
	var prev []byte
	r := attrs.children()
	if r.empty() {
		return false, errors.New("present but empty")
	}
	for !r.empty() {
		start := r.rest
		if _, _, err := readAttribute(&r); err != nil {
			return false, err
		}
		attr := start[:len(start)-len(r.rest)]
		if n, ok := isDER(attr, 0); !ok || n != len(attr) {
			return false, errors.New("not in DER")
		}
		if prev != nil && bytes.Compare(prev, attr) > 0 {
			sorted = false
		}
		prev = attr
	}
	return sorted, nil
}

// readAttribute reads Attribute ::= SEQUENCE { attrType OBJECT IDENTIFIER,
// attrValues SET OF ANY } and returns its type and values.
func readAttribute(r *berReader) (attrType []byte, values berElement, err error) {
	e, err := r.expect(berSequence, "attribute")
	if err != nil {
		return nil, values, err
	}
	fields := e.children()
	if attrType, err = readOID(&fields, "attribute type"); err != nil {
		return nil, values, err
	}
	if values, err = fields.expect(berSet, "attribute values"); err != nil {
		return nil, values, err
	}
	if !fields.empty() {
		return nil, values, errors.New("data after the attribute values")
	}
	return attrType, values, nil
}

// readVersion reads a CMSVersion INTEGER. Its value is not checked (pkcs7
// never did); it must be a well-formed integer that fits 64 bits.
func readVersion(r *berReader, what string) error {
	e, err := r.expect(berInteger, what)
	if err != nil {
		return err
	}
	if !validInteger(e.content) || len(e.content) > 8 {
		return fmt.Errorf("%s: malformed integer", what)
	}
	return nil
}

// readAlgorithm reads AlgorithmIdentifier ::= SEQUENCE { algorithm OBJECT
// IDENTIFIER, parameters ANY OPTIONAL } and returns the algorithm. The
// parameters (NULL, or absent, for every algorithm used here) are ignored.
func readAlgorithm(r *berReader, what string) ([]byte, error) {
	e, err := r.expect(berSequence, what)
	if err != nil {
		return nil, err
	}
	fields := e.children()
	oid, err := readOID(&fields, what)
	if err != nil {
		return nil, err
	}
	if !fields.empty() {
		if _, err := fields.next(); err != nil {
			return nil, fmt.Errorf("%s parameters: %w", what, err)
		}
	}
	if !fields.empty() {
		return nil, fmt.Errorf("data after the %s parameters", what)
	}
	return oid, nil
}

// readOID reads an OBJECT IDENTIFIER and returns its content octets.
func readOID(r *berReader, what string) ([]byte, error) {
	e, err := r.expect(berOID, what)
	if err != nil {
		return nil, err
	}
	if !validOID(e.content) {
		return nil, fmt.Errorf("%s: malformed object identifier", what)
	}
	return e.content, nil
}

// validOID reports whether b is the content of an OBJECT IDENTIFIER that
// encoding/asn1 accepts: one or more base-128 numbers, each minimal and
// below 2^31. Such an encoding is unique, so identifiers compare as bytes.
func validOID(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for start := 0; start < len(b); {
		if b[start] == 0x80 {
			return false
		}
		var v uint64
		i := start
		for ; ; i++ {
			if i == len(b) || i-start == 5 {
				return false
			}
			v = v<<7 | uint64(b[i]&0x7f)
			if b[i]&0x80 == 0 {
				break
			}
		}
		if v > 1<<31-1 {
			return false
		}
		start = i + 1
	}
	return true
}

// validInteger reports whether b is the content of an INTEGER in its
// minimal two's complement form, as DER and encoding/asn1 require.
func validInteger(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	if len(b) > 1 && (b[0] == 0 && b[1]&0x80 == 0 || b[0] == 0xff && b[1]&0x80 != 0) {
		return false
	}
	return true
}

// checkCRLs checks the crls field the way pkcs7 decoded it: as a [1]
// IMPLICIT SEQUENCE OF CertificateList in DER. CRLs are otherwise unused.
func checkCRLs(full []byte) error {
	var crls []pkix.CertificateList
	rest, err := asn1.UnmarshalWithParams(full, &crls, "tag:1")
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return errors.New("trailing data")
	}
	return nil
}

// oidString formats the content octets of a valid object identifier in
// dotted form, for error messages.
func oidString(b []byte) string {
	if !validOID(b) {
		return fmt.Sprintf("% x", b)
	}
	var out []byte
	var v uint64
	first := true
	for _, c := range b {
		v = v<<7 | uint64(c&0x7f)
		if c&0x80 != 0 {
			continue
		}
		if first {
			a := min(v/40, 2)
			out = strconv.AppendUint(out, a, 10)
			out = append(out, '.')
			out = strconv.AppendUint(out, v-40*a, 10)
			first = false
		} else {
			out = append(out, '.')
			out = strconv.AppendUint(out, v, 10)
		}
		v = 0
	}
	return string(out)
}

// digestHash returns the hash named by a digestAlgorithm.
func digestHash(oid []byte) (crypto.Hash, bool) {
	switch {
	case bytes.Equal(oid, oidSHA1):
		return crypto.SHA1, true
	case bytes.Equal(oid, oidSHA256):
		return crypto.SHA256, true
	case bytes.Equal(oid, oidSHA384):
		return crypto.SHA384, true
	case bytes.Equal(oid, oidSHA512):
		return crypto.SHA512, true
	}
	return 0, false
}

// signatureScheme returns the hash and key type a signature is made with,
// from the signer's signatureAlgorithm and the hash of its
// digestAlgorithm. It follows pkcs7's getSignatureAlgorithm: an
// ecdsa-with-SHA* identifier names its own hash; rsaEncryption, the
// sha*WithRSAEncryption identifiers and the named-curve identifiers take
// the digest algorithm's.
func signatureScheme(sigAlg []byte, digest crypto.Hash) (crypto.Hash, x509.PublicKeyAlgorithm, error) {
	switch {
	case bytes.Equal(sigAlg, oidECDSASHA1):
		return crypto.SHA1, x509.ECDSA, nil
	case bytes.Equal(sigAlg, oidECDSASHA256):
		return crypto.SHA256, x509.ECDSA, nil
	case bytes.Equal(sigAlg, oidECDSASHA384):
		return crypto.SHA384, x509.ECDSA, nil
	case bytes.Equal(sigAlg, oidECDSASHA512):
		return crypto.SHA512, x509.ECDSA, nil
	case bytes.Equal(sigAlg, oidRSA), bytes.Equal(sigAlg, oidRSASHA1), bytes.Equal(sigAlg, oidRSASHA256),
		bytes.Equal(sigAlg, oidRSASHA384), bytes.Equal(sigAlg, oidRSASHA512):
		return digest, x509.RSA, nil
	case bytes.Equal(sigAlg, oidCurveP256), bytes.Equal(sigAlg, oidCurveP384), bytes.Equal(sigAlg, oidCurveP521):
		return digest, x509.ECDSA, nil
	}
	return 0, 0, fmt.Errorf("unsupported signature algorithm %s", oidString(sigAlg))
}

// appendDigest appends the digest of data with h, one of the hashes
// digestHash returns, to dst.
func appendDigest(dst []byte, h crypto.Hash, data []byte) []byte {
	switch h {
	case crypto.SHA1:
		sum := sha1.Sum(data)
		return append(dst, sum[:]...)
	case crypto.SHA256:
		sum := sha256.Sum256(data)
		return append(dst, sum[:]...)
	case crypto.SHA384:
		sum := sha512.Sum384(data)
		return append(dst, sum[:]...)
	case crypto.SHA512:
		sum := sha512.Sum512(data)
		return append(dst, sum[:]...)
	}
	panic("cryptoutil: unexpected hash " + h.String())
}

// verify checks the signature over body (see MdmSignature.Verify).
func (sd *signedData) verify(body []byte) error {
	digest, ok := digestHash(sd.digestAlgorithm)
	if !ok {
		return fmt.Errorf("unsupported digest algorithm %s", oidString(sd.digestAlgorithm))
	}
	hash, keyAlgorithm, err := signatureScheme(sd.signatureAlgorithm, digest)
	if err != nil {
		return err
	}

	signed := body
	if sd.signedAttrs != nil {
		// RFC 5652 5.4: the message digest attribute holds the digest of
		// the content, and the signature covers the DER encoding of the
		// attributes with the SET OF tag.
		messageDigest, contentType, err := sd.readSignedAttributes()
		if err != nil {
			return err
		}
		var buf [sha512.Size]byte
		if !bytes.Equal(messageDigest, appendDigest(buf[:0], digest, body)) {
			return errDigestMismatch
		}
		if contentType != nil && !bytes.Equal(contentType, sd.contentType) {
			return errors.New("content-type attribute differs from the content type")
		}
		signed = sd.signedAttributesDER()
	}

	var buf [sha512.Size]byte
	hashed := appendDigest(buf[:0], hash, signed)
	switch key := sd.signer.PublicKey.(type) {
	case *rsa.PublicKey:
		if keyAlgorithm != x509.RSA {
			return fmt.Errorf("%v signature by an RSA key", keyAlgorithm)
		}
		return rsa.VerifyPKCS1v15(key, hash, hashed, sd.signature)
	case *ecdsa.PublicKey:
		if keyAlgorithm != x509.ECDSA {
			return fmt.Errorf("%v signature by an ECDSA key", keyAlgorithm)
		}
		if !ecdsa.VerifyASN1(key, hashed, sd.signature) {
			return errors.New("ecdsa verification failure")
		}
		return nil
	}
	return fmt.Errorf("unsupported public key type %T", sd.signer.PublicKey)
}

// readSignedAttributes returns the value of the message-digest attribute,
// which must be there, and of the content-type attribute, nil when it is
// absent. Each may appear once, with one value.
func (sd *signedData) readSignedAttributes() (messageDigest, contentType []byte, err error) {
	for r := (berReader{rest: sd.signedAttrs}); !r.empty(); {
		attrType, values, err := readAttribute(&r)
		if err != nil {
			return nil, nil, err
		}
		var want byte
		var dst *[]byte
		switch {
		case bytes.Equal(attrType, oidMessageDigest):
			want, dst = berOctetString, &messageDigest
		case bytes.Equal(attrType, oidContentType):
			want, dst = berOID, &contentType
		default:
			continue
		}
		if *dst != nil {
			return nil, nil, fmt.Errorf("attribute %s twice", oidString(attrType))
		}
		vr := values.children()
		v, err := vr.expect(want, "attribute "+oidString(attrType))
		if err != nil {
			return nil, nil, err
		}
		if !vr.empty() {
			return nil, nil, fmt.Errorf("attribute %s with more than one value", oidString(attrType))
		}
		*dst = v.content
	}
	if messageDigest == nil {
		return nil, nil, errors.New("no message-digest attribute")
	}
	return messageDigest, contentType, nil
}

// signedAttributesDER returns the DER encoding of the signed attributes as
// a SET OF: the SET tag and length, then the attributes, sorted as DER
// wants if they did not arrive so (which is what pkcs7 signs and checks).
func (sd *signedData) signedAttributesDER() []byte {
	n := len(sd.signedAttrs)
	out := make([]byte, 0, n+6)
	out = append(out, berSet)
	switch {
	case n < 0x80:
		out = append(out, byte(n))
	case n < 0x100:
		out = append(out, 0x81, byte(n))
	case n < 0x10000:
		out = append(out, 0x82, byte(n>>8), byte(n))
	default:
		out = append(out, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
	if sd.attrsSorted {
		return append(out, sd.signedAttrs...)
	}
	var attrs [][]byte
	for r := (berReader{rest: sd.signedAttrs}); !r.empty(); {
		e, err := r.next()
		if err != nil {
			break // checked by checkSignedAttributes
		}
		attrs = append(attrs, e.full)
	}
	slices.SortFunc(attrs, bytes.Compare)
	for _, a := range attrs {
		out = append(out, a...)
	}
	return out
}
