package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/mdm/simulator"
)

// runDevice enrolls devices and lets each answer its queued commands.
func runDevice(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mdmsim device", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "http://localhost:9000/mdm", "the server's MDM endpoint")
	checkinURL := fs.String("checkin", "", "send check-ins to this URL instead of -url, for a server run with -checkin (e.g. http://localhost:9000/checkin)")
	caDir := fs.String("ca", "dev", "directory with ca.pem and ca.key (from mdmsim ca)")
	udids := fs.String("udid", "", "comma-separated UDIDs to use (default: one random device)")
	enroll := fs.Bool("enroll", true, "send Authenticate and TokenUpdate first")
	certHeader := fs.String("cert-header", "", "send the identity in this header instead of Mdm-Signature")
	poll := fs.Duration("poll", 0, "keep polling for commands at this interval until interrupted (0: once); while nothing is queued a line says so once a minute")
	enrollURL := fs.String("enroll-url", "", "enroll as a device installing this enrollment profile (the server's /mdm/enroll): identity by SCEP with the profile's challenge (kept in the -ca directory for later runs with -enroll=false), then check-in at the profile's ServerURL instead of -url")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	list := []string{simulator.NewUDID()}
	if *udids != "" {
		list = strings.Split(*udids, ",")
	}
	var devices []*simulator.Device
	if *enrollURL != "" {
		for _, udid := range list {
			id, p, err := simulator.IdentityFromProfile(ctx, nil, *enrollURL, udid, nil)
			if err != nil {
				return fmt.Errorf("device %s: %w", udid, err)
			}
			t := &simulator.Transport{URL: p.ServerURL, CheckinURL: p.CheckInURL, CertHeader: *certHeader}
			d := simulator.NewDeviceWithUDID(t, id, udid)
			d.Topic = p.Topic
			if err := d.Enroll(ctx); err != nil {
				return fmt.Errorf("device %s: %w", udid, err)
			}
			if err := saveIdentity(filepath.Join(*caDir, "devices"), udid, id); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "enrolled %s through %s (identity serial %x from %s)\n", udid, *enrollURL, id.Cert.SerialNumber, p.SCEPURL)
			devices = append(devices, d)
		}
		return drain(ctx, devices, *poll, stdout)
	}
	certPath, keyPath := caPaths(*caDir)
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return fmt.Errorf("reading CA: %w", err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return fmt.Errorf("reading CA key: %w", err)
	}
	ca, err := simulator.LoadCA(certPEM, keyPEM)
	if err != nil {
		return err
	}
	transport := &simulator.Transport{URL: *url, CheckinURL: *checkinURL, CertHeader: *certHeader}
	for _, udid := range list {
		id, err := loadOrIssueIdentity(ca, filepath.Join(*caDir, "devices"), udid)
		if err != nil {
			return err
		}
		d := simulator.NewDeviceWithUDID(transport, id, udid)
		if *enroll {
			if err := d.Enroll(ctx); err != nil {
				return deviceError(udid, err)
			}
			fmt.Fprintf(stdout, "enrolled %s\n", udid)
		}
		devices = append(devices, d)
	}
	return drain(ctx, devices, *poll, stdout)
}

// drain lets each device answer its queued commands, once or every poll
// until ctx is done.
func drain(ctx context.Context, devices []*simulator.Device, poll time.Duration, stdout io.Writer) error {
	// quietSince is when each device last said it had nothing queued,
	// so that -poll says so once a minute rather than at every poll.
	quietSince := make([]time.Time, len(devices))
	for {
		for i, d := range devices {
			cmds, err := d.Channel.Drain(ctx, simulator.Acknowledge, 0)
			for _, c := range cmds {
				fmt.Fprintf(stdout, "%s: acknowledged %s %s\n", d.UDID(), c.Command.RequestType, c.CommandUUID)
			}
			if err != nil {
				return deviceError(d.UDID(), err)
			}
			switch {
			case len(cmds) > 0:
				quietSince[i] = time.Time{}
			case poll == 0:
				fmt.Fprintf(stdout, "%s: no commands queued\n", d.UDID())
			case time.Since(quietSince[i]) >= quietEvery:
				fmt.Fprintf(stdout, "%s: no commands queued; polling every %s\n", d.UDID(), poll)
				quietSince[i] = time.Now()
			}
		}
		if poll == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(poll):
		}
	}
}

// quietEvery is how often -poll repeats that nothing is queued.
const quietEvery = time.Minute

// deviceError names the device of err and, for a 400, says where the
// reason is: the server answers devices 400 without details.
func deviceError(udid string, err error) error {
	if simulator.StatusOf(err) == http.StatusBadRequest {
		return fmt.Errorf("device %s: %w (the server's log says why: look for this UDID or the request's trace_id)", udid, err)
	}
	return fmt.Errorf("device %s: %w", udid, err)
}

// loadOrIssueIdentity returns the identity kept for udid in dir, issuing
// and saving a new one the first time: a device keeps its identity across
// runs, as a real one keeps its SCEP certificate.
func loadOrIssueIdentity(ca *simulator.CA, dir, udid string) (*simulator.Identity, error) {
	if err := mdm.ValidateIDPart(udid); err != nil {
		return nil, fmt.Errorf("udid %q: %w", udid, err)
	}
	path := filepath.Join(dir, udid+".pem")
	if b, err := os.ReadFile(path); err == nil {
		id, err := simulator.ParseIdentityPEM(b)
		if err != nil {
			return nil, fmt.Errorf("reading identity %s: %w", path, err)
		}
		return id, nil
	}
	id, err := ca.Issue(udid)
	if err != nil {
		return nil, err
	}
	return id, saveIdentity(dir, udid, id)
}

// saveIdentity keeps the identity of udid in dir for later runs.
func saveIdentity(dir, udid string, id *simulator.Identity) error {
	if err := mdm.ValidateIDPart(udid); err != nil {
		return fmt.Errorf("udid %q: %w", udid, err)
	}
	b, err := id.PEM()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	if err := os.WriteFile(filepath.Join(dir, udid+".pem"), b, 0o600); err != nil {
		return fmt.Errorf("saving identity: %w", err)
	}
	return nil
}
