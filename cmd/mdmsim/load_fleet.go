package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/nanomdm/nanomdm/mdm/simulator"
)

// fleetVersion marks the layout of the fleet file.
const fleetVersion = 1

// rsaKeys is how many RSA keys an RSA fleet shares. Generating a 2048-bit
// key takes tens of milliseconds; the server never compares public keys,
// so a few serve any number of identities.
const rsaKeys = 4

// fleetFile is the JSON form of a fleet: the device identities a load run
// mints once and reuses, so that later runs skip minting and can find the
// devices already enrolled.
type fleetFile struct {
	Version int `json:"version"`
	// CA is the hex SHA-256 of the DER certificate of the CA that issued
	// the identities.
	CA      string `json:"ca"`
	KeyType string `json:"key_type"`
	// Keys are PKCS #8 private keys; devices name theirs by index.
	Keys    [][]byte      `json:"keys"`
	Devices []fleetDevice `json:"devices"`
}

type fleetDevice struct {
	UDID   string `json:"udid"`
	Serial string `json:"serial"`
	// Cert is the DER identity certificate.
	Cert []byte `json:"cert"`
	Key  int    `json:"key"`
	// UserID names the user channel the device has when a run asks for
	// user channels.
	UserID string `json:"user_id"`
}

// fleet is a loaded fleet file with parsed identities.
type fleet struct {
	file       fleetFile
	identities []*simulator.Identity
	minted     int // identities minted by this run
}

func caFingerprint(ca *simulator.CA) string {
	sum := sha256.Sum256(ca.Cert.Raw)
	return hex.EncodeToString(sum[:])
}

// loadFleet reads the fleet file at path (a missing file is an empty
// fleet), checks that ca issued it, and mints identities until it holds n
// devices, writing the file back when it grew. workers bound the minting
// goroutines.
// issuer makes the identity of a new device of the fleet.
type issuer func(ctx context.Context, udid string, key crypto.Signer) (*simulator.Identity, error)

// caIssuer issues identities with ca itself.
func caIssuer(ca *simulator.CA) issuer {
	return func(_ context.Context, udid string, key crypto.Signer) (*simulator.Identity, error) {
		return ca.IssueForKey(udid, key)
	}
}

// profileIssuer gets identities as devices do, from the SCEP server of
// the enrollment profile at profileURL (RSA keys only).
func profileIssuer(client *http.Client, profileURL string) issuer {
	return func(ctx context.Context, udid string, key crypto.Signer) (*simulator.Identity, error) {
		k, ok := key.(*rsa.PrivateKey)
		if !ok {
			return nil, errors.New("SCEP enrollment needs -key-type rsa")
		}
		id, _, err := simulator.IdentityFromProfile(ctx, client, profileURL, udid, k)
		return id, err
	}
}

// loadFleet reads the fleet at path, minting identities with iss for
// devices it lacks; ca is the CA its identities must come from.
func loadFleet(ctx context.Context, path string, ca *simulator.CA, iss issuer, keyType string, n, workers int) (*fleet, error) {
	f := &fleet{file: fleetFile{Version: fleetVersion, CA: caFingerprint(ca), KeyType: keyType}}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("reading fleet: %w", err)
	default:
		if err := json.Unmarshal(b, &f.file); err != nil {
			return nil, fmt.Errorf("reading fleet %s: %w", path, err)
		}
		switch {
		case f.file.Version != fleetVersion:
			return nil, fmt.Errorf("fleet %s: version %d, want %d", path, f.file.Version, fleetVersion)
		case f.file.CA != caFingerprint(ca):
			return nil, fmt.Errorf("fleet %s was minted by another CA: remove it or name another -fleet file", path)
		case f.file.KeyType != keyType:
			return nil, fmt.Errorf("fleet %s holds %s identities, -key-type is %s: remove it or name another -fleet file", path, f.file.KeyType, keyType)
		}
	}
	keys := make([]crypto.Signer, len(f.file.Keys))
	for i, der := range f.file.Keys {
		k, err := x509.ParsePKCS8PrivateKey(der)
		if err != nil {
			return nil, fmt.Errorf("fleet %s: key %d: %w", path, i, err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("fleet %s: key %d cannot sign", path, i)
		}
		keys[i] = s
	}
	have := min(len(f.file.Devices), n)
	f.identities = make([]*simulator.Identity, n)
	for i, d := range f.file.Devices[:have] {
		cert, err := x509.ParseCertificate(d.Cert)
		if err != nil {
			return nil, fmt.Errorf("fleet %s: device %s: %w", path, d.UDID, err)
		}
		if d.Key < 0 || d.Key >= len(keys) {
			return nil, fmt.Errorf("fleet %s: device %s: no key %d", path, d.UDID, d.Key)
		}
		f.identities[i] = &simulator.Identity{Cert: cert, Key: keys[d.Key]}
	}
	if have == n {
		return f, nil
	}
	if err := f.mint(ctx, iss, keys, n, workers); err != nil {
		return nil, err
	}
	b, err = json.Marshal(&f.file)
	if err != nil {
		return nil, err
	}
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("writing fleet: %w", err)
		}
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return nil, fmt.Errorf("writing fleet: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("writing fleet: %w", err)
	}
	return f, nil
}

// mint issues identities for devices len(f.file.Devices)..n-1.
func (f *fleet) mint(ctx context.Context, iss issuer, keys []crypto.Signer, n, workers int) error {
	from := len(f.file.Devices)
	if f.file.KeyType == "rsa" {
		for len(keys) < rsaKeys {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				return fmt.Errorf("generating RSA key: %w", err)
			}
			if err := f.addKey(k); err != nil {
				return err
			}
			keys = append(keys, k)
		}
	}
	devices := make([]fleetDevice, n-from)
	ecKeys := make([]crypto.Signer, n-from)
	work := make(chan int)
	errc := make(chan error, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				udid := simulator.NewUDID()
				var key crypto.Signer
				if f.file.KeyType == "rsa" {
					key = keys[(from+i)%len(keys)]
				} else {
					k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
					if err != nil {
						errc <- fmt.Errorf("generating identity key: %w", err)
						return
					}
					key, ecKeys[i] = k, k
				}
				id, err := iss(ctx, udid, key)
				if err != nil {
					errc <- err
					return
				}
				devices[i] = fleetDevice{
					UDID:   udid,
					Serial: randomSerial(),
					Cert:   id.Cert.Raw,
					UserID: simulator.NewUDID(),
				}
				if f.file.KeyType == "rsa" {
					devices[i].Key = (from + i) % len(keys)
				}
				f.identities[from+i] = id
			}
		}()
	}
	var err error
feed:
	for i := range devices {
		select {
		case work <- i:
		case err = <-errc:
			break feed
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errc:
		default:
		}
	}
	if err != nil {
		return fmt.Errorf("minting identities: %w", err)
	}
	for i := range devices {
		if ecKeys[i] != nil {
			devices[i].Key = len(f.file.Keys)
			if err := f.addKey(ecKeys[i]); err != nil {
				return err
			}
		}
	}
	f.file.Devices = append(f.file.Devices, devices...)
	f.minted = len(devices)
	return nil
}

// randomSerial returns a serial number of the form Apple uses.
func randomSerial() string {
	var b [6]byte
	rand.Read(b[:])
	return strings.ToUpper(hex.EncodeToString(b[:]))
}

func (f *fleet) addKey(k crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return fmt.Errorf("encoding key: %w", err)
	}
	f.file.Keys = append(f.file.Keys, der)
	return nil
}
