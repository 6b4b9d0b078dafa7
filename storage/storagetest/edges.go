package storagetest

import (
	"context"
	"errors"
	"testing"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/storage"
)

// testEdgeCases pins down answers every backend gives alike but the
// interface docs leave implicit.
func testEdgeCases(t *testing.T, s storage.AllStorage) {
	dev := NewDevice(t)
	dev.Enroll(t, s)

	// A second final report for a command is a report for a command no
	// longer queued: two servers racing for one report see one winner.
	cmd := NewCommand(t, "DeviceInformation")
	Enqueue(t, s, cmd, dev)
	StoreReport(t, s, dev, mdm.StatusAcknowledged, cmd.CommandUUID)
	wantReportError(t, s, dev, mdm.StatusAcknowledged, cmd.CommandUUID, storage.ErrUnknownCommand)
	wantReportError(t, s, dev, mdm.StatusNotNow, cmd.CommandUUID, storage.ErrUnknownCommand)
	WantNext(t, s, dev, false, nil)

	// A checked-out enrollment still takes commands (it has sent a
	// TokenUpdate); they are delivered once it is back.
	if err := s.Disable(dev.Request()); err != nil {
		t.Fatalf("disable: %v", err)
	}
	later := NewCommand(t, "ProfileList")
	Enqueue(t, s, later, dev)
	WantNext(t, s, dev, false, later)

	// Escrowing a bootstrap token needs a known device.
	unknown := NewDevice(t)
	err := s.StoreBootstrapToken(unknown.Request(), unknown.SetBootstrapToken(t, []byte{1, 2, 3}))
	if !errors.Is(err, storage.ErrUnknownEnrollment) {
		t.Errorf("bootstrap token of unknown device: have error %v, want %v", err, storage.ErrUnknownEnrollment)
	}

	// Asking whether a missing push certificate is stale is an error.
	if _, err := s.IsPushCertStale(context.Background(), NewTopic(), "token"); !errors.Is(err, storage.ErrNoPushCert) {
		t.Errorf("IsPushCertStale of unknown topic: have error %v, want %v", err, storage.ErrNoPushCert)
	}
}
