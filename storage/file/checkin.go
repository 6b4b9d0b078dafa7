package file

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nanomdm/nanomdm/cryptoutil"
	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/storage"
)

// state is the enrollment.json of a channel.
type state struct {
	Type      string `json:"type,omitempty"`
	Enabled   bool   `json:"enabled"`
	Tally     int    `json:"token_update_tally"`
	Topic     string `json:"topic,omitempty"`
	PushMagic string `json:"push_magic,omitempty"`
	TokenHex  string `json:"token_hex,omitempty"`
}

// known reports whether the channel has sent a TokenUpdate.
func (st *state) known() bool { return st != nil && st.Topic != "" }

// readState returns the state of c, or nil if it has none.
func readState(c channel) (*state, error) {
	b, err := readFile(c.path(stateFile))
	if err != nil || b == nil {
		return nil, err
	}
	st := new(state)
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", c.path(stateFile), err)
	}
	return st, nil
}

func (s *Storage) writeState(c channel, st *state) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return s.writeFile(c.path(stateFile), append(b, '\n'))
}

// disable turns off the channels and resets their tallies. Channels that
// never sent a TokenUpdate have no state to change.
func (s *Storage) disable(chans []channel) error {
	for _, c := range chans {
		st, err := readState(c)
		if err != nil {
			return err
		}
		if st == nil || (!st.Enabled && st.Tally == 0) {
			continue
		}
		st.Enabled, st.Tally = false, 0
		if err := s.writeState(c, st); err != nil {
			return fmt.Errorf("disabling %s: %w", c.id, err)
		}
	}
	return nil
}

// StoreAuthenticate implements storage.CheckinStore.
func (s *Storage) StoreAuthenticate(r *mdm.Request, msg *mdm.Authenticate) error {
	c, err := s.requestChannel(r)
	if err != nil {
		return err
	}
	defer s.lock(c.deviceID)()
	if err := s.writeInDir(c.path(authenticateFile), msg.Raw); err != nil {
		return fmt.Errorf("storing authenticate: %w", err)
	}
	if r.Certificate != nil {
		err = s.writeFile(c.path(identityCertFile), cryptoutil.PEMCertificate(r.Certificate.Raw))
	} else {
		err = removeFile(c.path(identityCertFile))
	}
	if err != nil {
		return fmt.Errorf("storing identity certificate: %w", err)
	}
	chans, err := s.clearQueues(c)
	if err != nil {
		return err
	}
	if err := s.disable(chans); err != nil {
		return err
	}
	return s.touch(c)
}

// StoreTokenUpdate implements storage.CheckinStore.
func (s *Storage) StoreTokenUpdate(r *mdm.Request, msg *mdm.TokenUpdate) error {
	c, err := s.requestChannel(r)
	if err != nil {
		return err
	}
	defer s.lock(c.deviceID)()
	if err := s.writeInDir(c.path(tokenUpdateFile), msg.Raw); err != nil {
		return fmt.Errorf("storing token update: %w", err)
	}
	if len(msg.UnlockToken) > 0 {
		if err := s.writeFile(c.path(unlockTokenFile), msg.UnlockToken); err != nil {
			return fmt.Errorf("storing unlock token: %w", err)
		}
	}
	st, err := readState(c)
	if err != nil {
		return err
	}
	if st == nil {
		st = new(state)
	}
	st.Type = r.EnrollID.Type.String()
	st.Enabled = true
	st.Tally++
	st.Topic, st.PushMagic, st.TokenHex = msg.Topic, msg.PushMagic, hex.EncodeToString(msg.Token)
	if err := s.writeState(c, st); err != nil {
		return fmt.Errorf("storing token update: %w", err)
	}
	return s.touch(c)
}

// StoreUserAuthenticate implements storage.CheckinStore.
func (s *Storage) StoreUserAuthenticate(r *mdm.Request, msg *mdm.UserAuthenticate) error {
	c, err := s.requestChannel(r)
	if err != nil {
		return err
	}
	name := userAuthFile
	if msg.DigestResponse != "" {
		name = userAuthDigestFile
	}
	defer s.lock(c.deviceID)()
	if err := s.writeInDir(c.path(name), msg.Raw); err != nil {
		return fmt.Errorf("storing user authenticate: %w", err)
	}
	return s.touch(c)
}

// Disable implements storage.CheckinStore.
func (s *Storage) Disable(r *mdm.Request) error {
	c, err := s.requestChannel(r)
	if err != nil {
		return err
	}
	if c.isUser() {
		return storage.ErrInvalidCheckOut
	}
	defer s.lock(c.deviceID)()
	chans, err := s.withUsers(c)
	if err != nil {
		return err
	}
	return s.disable(chans)
}

// RetrieveTokenUpdateTally implements storage.TokenUpdateTallyStore.
func (s *Storage) RetrieveTokenUpdateTally(_ context.Context, id string) (int, error) {
	c, err := s.channel(id)
	if err != nil {
		return 0, err
	}
	st, err := readState(c)
	if err != nil || st == nil {
		return 0, err
	}
	return st.Tally, nil
}

// RetrievePushInfo implements storage.PushStore.
func (s *Storage) RetrievePushInfo(_ context.Context, ids []string) (map[string]*mdm.Push, error) {
	out := make(map[string]*mdm.Push, len(ids))
	for _, id := range ids {
		c, err := s.channel(id)
		if err != nil {
			continue // an invalid ID names no enrollment
		}
		st, err := readState(c)
		if err != nil {
			return nil, err
		}
		if !st.known() {
			continue
		}
		token, err := hex.DecodeString(st.TokenHex)
		if err != nil {
			return nil, fmt.Errorf("decoding push token of %s: %w", id, err)
		}
		out[id] = &mdm.Push{Topic: st.Topic, PushMagic: st.PushMagic, Token: token}
	}
	return out, nil
}

// StoreBootstrapToken implements storage.BootstrapTokenStore. The token
// belongs to the device channel.
func (s *Storage) StoreBootstrapToken(r *mdm.Request, msg *mdm.SetBootstrapToken) error {
	c, err := s.requestChannel(r)
	if err != nil {
		return err
	}
	dev, err := s.channel(c.deviceID)
	if err != nil {
		return err
	}
	defer s.lock(dev.deviceID)()
	if _, err := os.Stat(dev.dir); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("storing bootstrap token: %w: %s", storage.ErrUnknownEnrollment, dev.id)
		}
		return err
	}
	p := dev.path(bootstrapTokenFile)
	if len(msg.BootstrapToken.BootstrapToken) == 0 {
		err = removeFile(p)
	} else {
		err = s.writeFile(p, msg.BootstrapToken.BootstrapToken)
	}
	if err != nil {
		return fmt.Errorf("storing bootstrap token: %w", err)
	}
	return nil
}

// RetrieveBootstrapToken implements storage.BootstrapTokenStore.
func (s *Storage) RetrieveBootstrapToken(r *mdm.Request, _ *mdm.GetBootstrapToken) (*mdm.BootstrapToken, error) {
	c, err := s.requestChannel(r)
	if err != nil {
		return nil, err
	}
	dev, err := s.channel(c.deviceID)
	if err != nil {
		return nil, err
	}
	b, err := readFile(dev.path(bootstrapTokenFile))
	if err != nil {
		return nil, fmt.Errorf("reading bootstrap token: %w", err)
	}
	if len(b) == 0 {
		return nil, nil
	}
	return &mdm.BootstrapToken{BootstrapToken: b}, nil
}

// RetrieveMigrationCheckins implements storage.MigrationStore. Devices
// come in ID order, each followed by its users in ID order; disabled
// channels and devices that never sent a TokenUpdate are left out.
func (s *Storage) RetrieveMigrationCheckins(ctx context.Context, out chan<- any) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	devices, err := subdirs(filepath.Join(s.dir, enrollmentsDir))
	if err != nil {
		return fmt.Errorf("listing enrollments: %w", err)
	}
	for _, id := range devices {
		c, err := s.channel(id)
		if err != nil {
			continue // not ours: never created by this backend
		}
		raws, err := s.migrationRaws(c)
		if err != nil {
			return err
		}
		for _, raw := range raws {
			msg, err := mdm.DecodeCheckin(raw)
			if err != nil {
				return fmt.Errorf("decoding stored check-in of %s: %w", id, err)
			}
			select {
			case out <- msg:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return nil
}

// migrationRaws reads the raw check-ins of device channel c and its users
// that are to migrate, under the device's lock so they agree.
func (s *Storage) migrationRaws(c channel) ([][]byte, error) {
	defer s.lock(c.deviceID)()
	chans, err := s.withUsers(c)
	if err != nil {
		return nil, err
	}
	var raws [][]byte
	for i, ch := range chans {
		st, err := readState(ch)
		if err != nil {
			return nil, err
		}
		if st == nil || !st.Enabled {
			if i == 0 {
				return nil, nil // a disabled device takes its users along
			}
			continue
		}
		names := []string{tokenUpdateFile}
		if i == 0 {
			names = []string{authenticateFile, tokenUpdateFile}
		}
		var msgs [][]byte
		for _, name := range names {
			b, err := readFile(ch.path(name))
			if err != nil {
				return nil, fmt.Errorf("reading %s of %s: %w", name, ch.id, err)
			}
			if len(b) == 0 {
				break
			}
			msgs = append(msgs, b)
		}
		if len(msgs) != len(names) {
			if i == 0 {
				return nil, nil
			}
			continue
		}
		raws = append(raws, msgs...)
	}
	return raws, nil
}
