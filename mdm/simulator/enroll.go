package simulator

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"time"

	"github.com/groob/plist"
	"github.com/smallstep/pkcs7"
	"github.com/smallstep/scep"
	"github.com/smallstep/scep/x509util"
)

// Profile is what a device reads of an enrollment profile: its MDM
// payload and its SCEP identity payload.
type Profile struct {
	ServerURL  string
	CheckInURL string
	Topic      string
	// SignMessage tells the device to sign requests (Mdm-Signature);
	// without it the TLS proxy passes the client certificate on.
	SignMessage bool
	// SCEPURL and Challenge come from the SCEP payload; SCEPURL is empty
	// when the profile has none.
	SCEPURL   string
	Challenge string
	// Signed reports whether the profile came wrapped in a CMS signature.
	Signed bool
}

// profilePayload is the part of a configuration profile the simulator
// reads.
type profilePayload struct {
	PayloadType    string           `plist:"PayloadType"`
	PayloadContent []map[string]any `plist:"PayloadContent"`
}

// ParseProfile reads an enrollment profile, plain or CMS-signed (the
// signature itself is not checked).
func ParseProfile(raw []byte) (*Profile, error) {
	p := &Profile{}
	if len(raw) > 0 && raw[0] == 0x30 { // DER: a signed profile
		p7, err := pkcs7.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("reading signed profile: %w", err)
		}
		raw, p.Signed = p7.Content, true
	}
	var top profilePayload
	if err := plist.Unmarshal(raw, &top); err != nil {
		return nil, fmt.Errorf("reading profile: %w", err)
	}
	if top.PayloadType != "Configuration" {
		return nil, fmt.Errorf("profile PayloadType %q, want Configuration", top.PayloadType)
	}
	for _, pl := range top.PayloadContent {
		switch pl["PayloadType"] {
		case "com.apple.mdm":
			p.ServerURL, _ = pl["ServerURL"].(string)
			p.CheckInURL, _ = pl["CheckInURL"].(string)
			p.Topic, _ = pl["Topic"].(string)
			p.SignMessage, _ = pl["SignMessage"].(bool)
		case "com.apple.security.scep":
			content, _ := pl["PayloadContent"].(map[string]any)
			p.SCEPURL, _ = content["URL"].(string)
			p.Challenge, _ = content["Challenge"].(string)
		}
	}
	if p.ServerURL == "" || p.Topic == "" {
		return nil, errors.New("profile has no MDM payload with ServerURL and Topic")
	}
	return p, nil
}

// get fetches u and returns the body of a 200 answer, at most 1 MiB
// (profiles and CA certificates are small).
func get(ctx context.Context, client *http.Client, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	return do(client, req, 1<<20)
}

// FetchProfile downloads and reads the enrollment profile at u.
func FetchProfile(ctx context.Context, client *http.Client, u string) (*Profile, error) {
	raw, err := get(ctx, client, u)
	if err != nil {
		return nil, fmt.Errorf("fetching profile: %w", err)
	}
	return ParseProfile(raw)
}

// SCEPClient requests identities from a SCEP server as a device does.
type SCEPClient struct {
	// URL is the SCEP endpoint, such as https://mdm.example.com/scep.
	URL string
	// Client sends the requests; nil means a client with a 30 s timeout.
	Client *http.Client
	// Key, if set, is the RSA key of the identities asked for, spared
	// generating one per request; nil means a fresh 2048-bit key.
	Key *rsa.PrivateKey
}

// ErrSCEPFailure is returned when the SCEP server refused the request
// with a CertRep failure; the error text names the failInfo.
var ErrSCEPFailure = errors.New("SCEP request refused")

// Enroll asks for an identity for commonName with a challenge (PKCSReq
// signed with a throwaway self-signed certificate).
func (c *SCEPClient) Enroll(ctx context.Context, commonName, challenge string) (*Identity, error) {
	key, err := c.key()
	if err != nil {
		return nil, err
	}
	self, err := selfSigned(key, commonName)
	if err != nil {
		return nil, err
	}
	return c.request(ctx, scep.PKCSReq, commonName, challenge, key, &Identity{Cert: self, Key: key})
}

// Renew asks for a new identity for the subject of old, proving itself
// with old instead of a challenge (RenewalReq, new key).
func (c *SCEPClient) Renew(ctx context.Context, old *Identity) (*Identity, error) {
	key, err := c.key()
	if err != nil {
		return nil, err
	}
	return c.request(ctx, scep.RenewalReq, old.Cert.Subject.CommonName, "", key, old)
}

func (c *SCEPClient) key() (*rsa.PrivateKey, error) {
	if c.Key != nil {
		return c.Key, nil
	}
	return rsa.GenerateKey(rand.Reader, 2048)
}

// CACert fetches the CA certificate (GetCACert).
func (c *SCEPClient) CACert(ctx context.Context) (*x509.Certificate, error) {
	der, err := get(ctx, c.Client, c.URL+"?operation=GetCACert")
	if err != nil {
		return nil, fmt.Errorf("GetCACert: %w", err)
	}
	return x509.ParseCertificate(der)
}

func (c *SCEPClient) request(ctx context.Context, typ scep.MessageType, commonName, challenge string, key *rsa.PrivateKey, signer *Identity) (*Identity, error) {
	ca, err := c.CACert(ctx)
	if err != nil {
		return nil, err
	}
	csrDER, err := x509util.CreateCertificateRequest(rand.Reader, &x509util.CertificateRequest{
		CertificateRequest: x509.CertificateRequest{Subject: pkix.Name{CommonName: commonName}},
		ChallengePassword:  challenge,
	}, key)
	if err != nil {
		return nil, fmt.Errorf("creating CSR: %w", err)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, err
	}
	msg, err := scep.NewCSRRequest(csr, &scep.PKIMessage{
		MessageType: typ,
		Recipients:  []*x509.Certificate{ca},
		SignerKey:   signer.Key,
		SignerCert:  signer.Cert,
	})
	if err != nil {
		return nil, fmt.Errorf("building SCEP request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL+"?operation=PKIOperation", bytes.NewReader(msg.Raw))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-pki-message")
	body, err := do(c.Client, req, 1<<20)
	if err != nil {
		return nil, fmt.Errorf("PKIOperation: %w", err)
	}
	rep, err := scep.ParsePKIMessage(body, scep.WithCACerts([]*x509.Certificate{ca}))
	if err != nil {
		return nil, fmt.Errorf("reading CertRep: %w", err)
	}
	if rep.CertRepMessage == nil {
		return nil, errors.New("answer is not a CertRep")
	}
	if rep.PKIStatus != scep.SUCCESS {
		return nil, fmt.Errorf("%w: pkiStatus %s, failInfo %s", ErrSCEPFailure, rep.PKIStatus, rep.FailInfo)
	}
	if err := rep.DecryptPKIEnvelope(signer.Cert, signer.Key); err != nil {
		return nil, fmt.Errorf("decrypting CertRep: %w", err)
	}
	return &Identity{Cert: rep.CertRepMessage.Certificate, Key: key}, nil
}

// selfSigned makes the throwaway certificate a first request is signed
// with, as SCEP clients do.
func selfSigned(key *rsa.PrivateKey, commonName string) (*x509.Certificate, error) {
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("creating request signer: %w", err)
	}
	return x509.ParseCertificate(der)
}

// IdentityFromProfile gets an identity for commonName the way a device
// installing the enrollment profile at profileURL does: it fetches the
// profile (with its own challenge) and runs SCEP against the profile's
// SCEP URL. client may be nil; key, if not nil, is the identity key.
func IdentityFromProfile(ctx context.Context, client *http.Client, profileURL, commonName string, key *rsa.PrivateKey) (*Identity, *Profile, error) {
	p, err := FetchProfile(ctx, client, profileURL)
	if err != nil {
		return nil, nil, err
	}
	if p.SCEPURL == "" {
		return nil, p, errors.New("profile has no SCEP payload")
	}
	if _, err := url.Parse(p.SCEPURL); err != nil {
		return nil, p, fmt.Errorf("profile SCEP URL: %w", err)
	}
	sc := &SCEPClient{URL: p.SCEPURL, Client: client, Key: key}
	id, err := sc.Enroll(ctx, commonName, p.Challenge)
	return id, p, err
}

// EnrollFromProfile enrolls a new device as IdentityFromProfile, then
// sends Authenticate and TokenUpdate to the profile's ServerURL
// (CheckInURL) with the identity and the profile's topic.
func EnrollFromProfile(ctx context.Context, client *http.Client, profileURL string, key *rsa.PrivateKey) (*Device, *Profile, error) {
	udid := NewUDID()
	id, p, err := IdentityFromProfile(ctx, client, profileURL, udid, key)
	if err != nil {
		return nil, p, err
	}
	t := &Transport{URL: p.ServerURL, CheckinURL: p.CheckInURL, Client: client}
	d := NewDeviceWithUDID(t, id, udid)
	d.Topic = p.Topic
	if err := d.Enroll(ctx); err != nil {
		return d, p, err
	}
	return d, p, nil
}
