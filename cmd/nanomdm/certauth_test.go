package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/nanomdm/nanomdm/cryptoutil"
	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/mdm/simulator"
	"github.com/nanomdm/nanomdm/storage"
)

// enrolled returns a device with a fresh identity from the server's CA,
// enrolled over HTTP.
func enrolled(t *testing.T, s *server, tr *simulator.Transport, name string) *simulator.Device {
	t.Helper()
	id, err := s.ca.Issue(name)
	if err != nil {
		t.Fatalf("issuing identity: %v", err)
	}
	d := simulator.NewDevice(tr, id)
	if err := d.Enroll(context.Background()); err != nil {
		t.Fatalf("enrolling %s: %v", name, err)
	}
	return d
}

func setBootstrapToken(c *simulator.Channel, token []byte) ([]byte, error) {
	return c.Checkin(context.Background(), &mdm.SetBootstrapToken{
		Enrollment:     c.Enrollment,
		MessageType:    mdm.MessageType{MessageType: mdm.MessageSetBootstrapToken},
		BootstrapToken: mdm.BootstrapToken{BootstrapToken: token},
	})
}

func getBootstrapToken(c *simulator.Channel) ([]byte, error) {
	return c.GetBootstrapToken(context.Background())
}

// bootstrapTokenOf asks for the channel's bootstrap token and returns it,
// or nil for an empty answer.
func bootstrapTokenOf(t *testing.T, c *simulator.Channel) []byte {
	t.Helper()
	tok, err := c.BootstrapToken(context.Background())
	if err != nil {
		t.Fatalf("GetBootstrapToken of %s: %v", c.ID(), err)
	}
	return tok
}

func userAuthenticate(c *simulator.Channel, digest string) ([]byte, error) {
	return c.Checkin(context.Background(), &mdm.UserAuthenticate{
		Enrollment:     c.Enrollment,
		MessageType:    mdm.MessageType{MessageType: mdm.MessageUserAuthenticate},
		DigestResponse: digest,
	})
}

// report sends a command report and returns the raw answer.
func report(c *simulator.Channel, status, uuid string) ([]byte, error) {
	cmd, err := c.Send(context.Background(), simulator.Report{CommandUUID: uuid, Status: status, RequestType: "ProfileList"})
	if cmd != nil {
		return cmd.Raw, err
	}
	return nil, err
}

// enqueueOne queues a ProfileList with uuid for ids, without push.
func enqueueOne(t *testing.T, s *server, uuid string, ids ...string) {
	t.Helper()
	cmd, err := mdm.NewCommand(uuid, "ProfileList", nil)
	if err != nil {
		t.Fatalf("building command: %v", err)
	}
	if status, a := enqueue(t, s, ids, cmd, "?nopush=1"); status != http.StatusOK {
		t.Fatalf("enqueue %s to %v: have %d %+v, want 200", uuid, ids, status, a)
	}
}

// wantCommands drains c and fails unless it received exactly uuids.
func wantCommands(t *testing.T, c *simulator.Channel, uuids ...string) {
	t.Helper()
	got, err := c.Drain(context.Background(), simulator.Acknowledge, 10)
	if err != nil {
		t.Fatalf("draining %s: %v", c.ID(), err)
	}
	var have []string
	for _, cmd := range got {
		have = append(have, cmd.CommandUUID)
	}
	if strings.Join(have, ",") != strings.Join(uuids, ",") {
		t.Errorf("%s received %v, want %v", c.ID(), have, uuids)
	}
}

// associated reports whether the certificate of id is bound to the device
// channel of enrollment enrollID.
func associated(t *testing.T, s storage.CertAuthStore, enrollID string, id *simulator.Identity) bool {
	t.Helper()
	ok, err := s.IsCertHashAssociated(request(enrollID), cryptoutil.CertHash(id.Cert))
	if err != nil {
		t.Fatalf("checking association of %s: %v", enrollID, err)
	}
	return ok
}

// victimState is what an impersonator must not change.
type victimState struct {
	push  map[string]mdm.Push
	tally map[string]int
}

func stateOf(t *testing.T, s storage.AllStorage, ids ...string) victimState {
	t.Helper()
	v := victimState{push: map[string]mdm.Push{}, tally: map[string]int{}}
	for id, p := range pushInfo(t, s, ids...) {
		v.push[id] = *p
	}
	for _, id := range ids {
		v.tally[id] = tally(t, s, id)
	}
	return v
}

// TestCertAuthRefusesImpersonation has device B, enrolled with its own
// valid identity, send every kind of request claiming device A's UDID
// (and A's user channel). Each is refused with 500 and leaks nothing; A's
// push data, tallies, bootstrap token and queues are untouched, and A
// still gets its commands.
func TestCertAuthRefusesImpersonation(t *testing.T) {
	for _, be := range allBackends {
		t.Run(be.name, func(t *testing.T) {
			s, store := launch(t, launchConfig{storage: be.flags(t)})
			tr := &simulator.Transport{URL: s.url + "/mdm"}
			a := enrolled(t, s, tr, "device A")
			b := enrolled(t, s, tr, "device B")
			aUser := a.User("A-USER-1", "alice")
			if err := aUser.TokenUpdate(context.Background()); err != nil {
				t.Fatalf("user token update: %v", err)
			}
			secret := []byte("bootstrap token of A")
			if _, err := setBootstrapToken(a.Channel, secret); err != nil {
				t.Fatalf("escrowing A's bootstrap token: %v", err)
			}
			enqueueOne(t, s, "victim-device", a.UDID())
			enqueueOne(t, s, "victim-user", aUser.ID())
			before := stateOf(t, store, a.UDID(), aUser.ID())

			// B's identity, A's UDID, push data of its own.
			m := simulator.NewDeviceWithUDID(tr, b.Identity, a.UDID())
			mUser := m.User("A-USER-1", "alice")
			ctx := context.Background()
			for _, attempt := range []struct {
				name string
				send func() ([]byte, error)
			}{
				{"Authenticate", func() ([]byte, error) { return m.Channel.Checkin(ctx, m.AuthenticateMessage()) }},
				{"TokenUpdate", func() ([]byte, error) { return m.Channel.Checkin(ctx, m.Channel.TokenUpdateMessage()) }},
				{"user TokenUpdate", func() ([]byte, error) { return mUser.Checkin(ctx, mUser.TokenUpdateMessage()) }},
				{"SetBootstrapToken", func() ([]byte, error) { return setBootstrapToken(m.Channel, []byte("forged")) }},
				{"SetBootstrapToken empty", func() ([]byte, error) { return setBootstrapToken(m.Channel, nil) }},
				{"GetBootstrapToken", func() ([]byte, error) { return getBootstrapToken(m.Channel) }},
				{"UserAuthenticate", func() ([]byte, error) { return userAuthenticate(mUser, "Digest forged") }},
				{"Idle", func() ([]byte, error) { return report(m.Channel, mdm.StatusIdle, "") }},
				{"user Idle", func() ([]byte, error) { return report(mUser, mdm.StatusIdle, "") }},
				{"NotNow", func() ([]byte, error) { return report(m.Channel, mdm.StatusNotNow, "victim-device") }},
				{"Acknowledged", func() ([]byte, error) { return report(m.Channel, mdm.StatusAcknowledged, "victim-device") }},
				{"user Acknowledged", func() ([]byte, error) { return report(mUser, mdm.StatusAcknowledged, "victim-user") }},
				{"CheckOut", func() ([]byte, error) { return nil, m.CheckOut(ctx) }},
			} {
				body, err := attempt.send()
				if status := mdmStatus(t, err); status != http.StatusInternalServerError {
					t.Errorf("%s claiming A: have status %d, want 500", attempt.name, status)
				}
				if bytes.Contains(body, []byte("<plist")) {
					t.Errorf("%s claiming A: answer leaks A's data: %q", attempt.name, body)
				}
			}

			if after := stateOf(t, store, a.UDID(), aUser.ID()); !reflect.DeepEqual(after, before) {
				t.Errorf("A's state changed:\nhave %+v\nwant %+v", after, before)
			}
			wantPush(t, store, a.Channel)
			wantPush(t, store, aUser)
			if associated(t, store, a.UDID(), b.Identity) {
				t.Errorf("B's certificate became associated with A")
			}
			if !associated(t, store, b.UDID(), b.Identity) || !associated(t, store, a.UDID(), a.Identity) {
				t.Errorf("the devices lost their own associations")
			}
			if have := bootstrapTokenOf(t, a.Channel); !bytes.Equal(have, secret) {
				t.Errorf("A's bootstrap token after the attempts: have %q, want %q", have, secret)
			}
			wantCommands(t, a.Channel, "victim-device")
			wantCommands(t, aUser, "victim-user")
			wantCommands(t, b.Channel)
		})
	}
}

// TestCertAuthUsedCertificateForNewDevice sends device A's identity in an
// Authenticate for a UDID never seen: refused, and nothing is created.
func TestCertAuthUsedCertificateForNewDevice(t *testing.T) {
	for _, be := range allBackends {
		t.Run(be.name, func(t *testing.T) { testUsedCertificateForNewDevice(t, be) })
	}
}

func testUsedCertificateForNewDevice(t *testing.T, be backend) {
	s, store := launch(t, launchConfig{storage: be.flags(t)})
	tr := &simulator.Transport{URL: s.url + "/mdm"}
	a := enrolled(t, s, tr, "device A")
	n := simulator.NewDeviceWithUDID(tr, a.Identity, simulator.NewUDID())
	if status := mdmStatus(t, n.Authenticate(context.Background())); status != http.StatusInternalServerError {
		t.Errorf("Authenticate with A's certificate for %s: have status %d, want 500", n.UDID(), status)
	}
	if status := mdmStatus(t, n.Channel.TokenUpdate(context.Background())); status != http.StatusInternalServerError {
		t.Errorf("TokenUpdate with A's certificate for %s: have status %d, want 500", n.UDID(), status)
	}
	if p := pushInfo(t, store, n.UDID()); len(p) != 0 {
		t.Errorf("push info of the refused device: have %v, want none", p)
	}
	if n := tally(t, store, n.UDID()); n != 0 {
		t.Errorf("tally of the refused device: have %d, want 0", n)
	}
	if associated(t, store, n.UDID(), a.Identity) {
		t.Errorf("A's certificate became associated with %s", n.UDID())
	}
	cmd, _ := mdm.NewCommand("to-refused", "ProfileList", nil)
	if status, _ := enqueue(t, s, []string{n.UDID()}, cmd, "?nopush=1"); status != http.StatusInternalServerError {
		t.Errorf("enqueue to the refused device: have %d, want 500 (unknown enrollment)", status)
	}
	wantCommands(t, a.Channel)
}

// TestCertAuthRenewal re-enrolls a device with a renewed identity: the
// new Authenticate is accepted and both certificates stay associated.
func TestCertAuthRenewal(t *testing.T) {
	for _, be := range allBackends {
		t.Run(be.name, func(t *testing.T) {
			s, store := launch(t, launchConfig{storage: be.flags(t)})
			tr := &simulator.Transport{URL: s.url + "/mdm"}
			a := enrolled(t, s, tr, "device A")
			old := a.Identity
			renewed, err := s.ca.Issue("device A renewed")
			if err != nil {
				t.Fatalf("issuing identity: %v", err)
			}
			a.Identity = renewed
			if err := a.Enroll(context.Background()); err != nil {
				t.Fatalf("re-enrolling with the renewed identity: %v", err)
			}
			if !associated(t, store, a.UDID(), old) || !associated(t, store, a.UDID(), renewed) {
				t.Errorf("after renewal: old associated %v, renewed associated %v; want both",
					associated(t, store, a.UDID(), old), associated(t, store, a.UDID(), renewed))
			}
			enqueueOne(t, s, "after-renewal-1", a.UDID())
			wantCommands(t, a.Channel, "after-renewal-1")
			a.Identity = old
			enqueueOne(t, s, "after-renewal-2", a.UDID())
			wantCommands(t, a.Channel, "after-renewal-2")
			wantPush(t, store, a.Channel)
		})
	}
}

// migrate PUTs raw check-in messages to /migration and fails on any
// answer but 200.
func migrate(t *testing.T, s *server, msgs ...any) {
	t.Helper()
	for _, m := range msgs {
		raw, err := mdm.EncodePlist(m)
		if err != nil {
			t.Fatalf("encoding %T: %v", m, err)
		}
		status, body := putMigration(t, s, http.MethodPut, raw, true)
		if status != http.StatusOK {
			t.Fatalf("migrating %T: have %d %q, want 200", m, status, body)
		}
	}
}

// wantRefused sends Idle on every channel, then a TokenUpdate on each, and
// fails unless every answer is 500.
func wantRefused(t *testing.T, what string, chans ...*simulator.Channel) {
	t.Helper()
	for _, c := range chans {
		body, err := report(c, mdm.StatusIdle, "")
		if status := mdmStatus(t, err); status != http.StatusInternalServerError || len(body) > 0 {
			t.Errorf("Idle of %s %s: have status %d body %q, want 500", c.ID(), what, status, body)
		}
	}
	for _, c := range chans {
		if status := mdmStatus(t, c.TokenUpdate(context.Background())); status != http.StatusInternalServerError {
			t.Errorf("TokenUpdate of %s %s: have status %d, want 500", c.ID(), what, status)
		}
	}
}

// TestCertAuthMigratedEnrollment creates an enrollment through
// /migration, so it has no certificate association. Without -retro its
// requests are refused; with -retro the first certificate it presents (on
// a user channel, here) is bound and a second, different one is refused.
func TestCertAuthMigratedEnrollment(t *testing.T) {
	for _, be := range allBackends {
		for _, retro := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/retro=%v", be.name, retro), func(t *testing.T) {
				extra := []string{"-migration"}
				if retro {
					extra = append(extra, "-retro")
				}
				s, store := launch(t, launchConfig{storage: be.flags(t), extra: extra})
				tr := &simulator.Transport{URL: s.url + "/mdm"}
				id, _ := s.ca.Issue("migrated device")
				dev := simulator.NewDevice(tr, id)
				user := dev.User("M-USER-1", "bob")
				migrate(t, s, dev.AuthenticateMessage(), dev.Channel.TokenUpdateMessage(), user.TokenUpdateMessage())
				wantPush(t, store, dev.Channel)
				wantPush(t, store, user)
				if has, err := store.EnrollmentHasCertHash(request(dev.UDID()), ""); err != nil || has {
					t.Fatalf("migrated enrollment has an association: %v, %v", has, err)
				}
				enqueueOne(t, s, "migrated-device", dev.UDID())
				enqueueOne(t, s, "migrated-user", user.ID())
				before := stateOf(t, store, dev.UDID(), user.ID())

				if !retro {
					wantRefused(t, "without -retro", user, dev.Channel)
					if associated(t, store, dev.UDID(), id) {
						t.Errorf("certificate associated without -retro")
					}
					if after := stateOf(t, store, dev.UDID(), user.ID()); !reflect.DeepEqual(after, before) {
						t.Errorf("refused requests changed the enrollment:\nhave %+v\nwant %+v", after, before)
					}
					return
				}

				// The user channel speaks first: its device gets the association.
				wantCommands(t, user, "migrated-user")
				wantCommands(t, dev.Channel, "migrated-device")
				if !associated(t, store, dev.UDID(), id) {
					t.Fatalf("first certificate not associated with -retro")
				}
				other, _ := s.ca.Issue("second certificate")
				imp := simulator.NewDeviceWithUDID(tr, other, dev.UDID())
				impUser := imp.User("M-USER-1", "bob")
				enqueueOne(t, s, "migrated-device-2", dev.UDID())
				before = stateOf(t, store, dev.UDID(), user.ID())
				wantRefused(t, "with a second certificate", impUser, imp.Channel)
				if associated(t, store, dev.UDID(), other) {
					t.Errorf("second certificate became associated")
				}
				if after := stateOf(t, store, dev.UDID(), user.ID()); !reflect.DeepEqual(after, before) {
					t.Errorf("refused requests changed the enrollment:\nhave %+v\nwant %+v", after, before)
				}
				wantCommands(t, dev.Channel, "migrated-device-2")
			})
		}
	}
}
