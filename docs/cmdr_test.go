package docs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/groob/plist"

	"github.com/nanomdm/nanomdm/certverify"
	"github.com/nanomdm/nanomdm/http/api"
	httpmdm "github.com/nanomdm/nanomdm/http/mdm"
	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/mdm/commands"
	"github.com/nanomdm/nanomdm/mdm/simulator"
	"github.com/nanomdm/nanomdm/service/nanomdm"
	"github.com/nanomdm/nanomdm/storage/inmem"
)

// specNoArgumentCommands are the no-argument sub-commands SPEC §1.3 asks
// cmdr.py for.
var specNoArgumentCommands = []string{
	"ProfileList", "ProvisioningProfileList", "CertificateList", "SecurityInfo", "RestartDevice",
	"ShutDownDevice", "StopMirroring", "ClearRestrictionsPassword", "UserList", "LogOutUser",
	"PlayLostModeSound", "DisableLostMode", "DeviceLocation", "ManagedMediaList", "DeviceConfigured",
	"AvailableOSUpdates", "NSExtensionMappings", "OSUpdateStatus", "EnableRemoteDesktop",
	"DisableRemoteDesktop", "ActivationLockBypassCode", "ScheduleOSUpdateScan",
}

// specArgumentCommands are the other sub-commands of SPEC §1.3.
var specArgumentCommands = []string{
	"DeviceInformation", "InstallProfile", "RemoveProfile", "ScheduleOSUpdate",
	"AccountConfiguration", "Settings", "EraseDevice", "DeviceLock", "command",
}

// readOnlyCommands are the request types cmdr.py -r may print.
var readOnlyCommands = map[string]bool{
	"ProfileList": true, "ProvisioningProfileList": true, "CertificateList": true,
	"SecurityInfo": true, "UserList": true, "ManagedMediaList": true, "AvailableOSUpdates": true,
	"NSExtensionMappings": true, "OSUpdateStatus": true, "DeviceInformation": true,
}

// runCmdr runs tools/cmdr.py and returns its exit code, stdout and stderr.
func runCmdr(t *testing.T, stdin []byte, args ...string) (int, []byte, string) {
	t.Helper()
	cmd := exec.Command(python3(t), append([]string{repoFile(t, "tools/cmdr.py")}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), stdout.Bytes(), stderr.String()
		}
		t.Fatalf("running cmdr.py %v: %v", args, err)
	}
	return 0, stdout.Bytes(), stderr.String()
}

// enqueueServer is the real MDM and enqueue handlers on in-memory storage,
// with one enrolled simulated device.
type enqueueServer struct {
	url    string
	device *simulator.Device
}

func newEnqueueServer(t *testing.T) *enqueueServer {
	t.Helper()
	ca, err := simulator.NewCA("cmdr test CA")
	if err != nil {
		t.Fatalf("creating CA: %v", err)
	}
	verifier, err := certverify.NewPoolVerifier(ca.CertPEM(), nil)
	if err != nil {
		t.Fatalf("creating verifier: %v", err)
	}
	store := inmem.New()
	mux := http.NewServeMux()
	mux.Handle("/mdm", httpmdm.IdentityMiddleware(httpmdm.CheckinAndCommandHandler(nanomdm.New(store)), verifier))
	mux.Handle("/v1/enqueue/", http.StripPrefix("/v1/enqueue/", api.EnqueueHandler(store)))
	mux.Handle("/v1/enqueue", http.StripPrefix("/v1/enqueue", api.EnqueueHandler(store)))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	udid := simulator.NewUDID()
	id, err := ca.Issue(udid)
	if err != nil {
		t.Fatalf("issuing identity: %v", err)
	}
	dev := simulator.NewDeviceWithUDID(&simulator.Transport{URL: srv.URL + "/mdm"}, id, udid)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := dev.Enroll(ctx); err != nil {
		t.Fatalf("enrolling simulated device: %v", err)
	}
	return &enqueueServer{url: srv.URL, device: dev}
}

// enqueue PUTs a command plist as `curl -T - …/v1/enqueue/ID?nopush=1`
// does and checks the answer.
func (s *enqueueServer) enqueue(t *testing.T, body []byte, wantUUID, wantType string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, s.url+"/v1/enqueue/"+s.device.UDID()+"?nopush=1", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatalf("enqueue: %v", err)
	}
	defer resp.Body.Close()
	var answer api.Response
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		t.Fatalf("decoding enqueue answer: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("enqueue answered %d %+v, want 200", resp.StatusCode, answer)
	}
	if answer.CommandUUID != wantUUID || answer.RequestType != wantType {
		t.Errorf("enqueue answered command_uuid %q request_type %q, want %q %q",
			answer.CommandUUID, answer.RequestType, wantUUID, wantType)
	}
}

type cmdrCase struct {
	name        string
	args        []string // after -u UUID
	stdin       []byte
	requestType string
	// want, if set, is the whole Command dictionary expected.
	want map[string]any
	// params are the values that give the same command from the Go
	// template (package mdm/commands) of the same name.
	params map[string]string
}

func cmdrCases(t *testing.T) []cmdrCase {
	profile := readRepoFile(t, "docs/enroll.mobileconfig")
	hashFile := filepath.Join(t.TempDir(), "admin.hash")
	hash := []byte("<plist>not a real SALTED-SHA512-PBKDF2 dictionary</plist>")
	if err := os.WriteFile(hashFile, hash, 0o600); err != nil {
		t.Fatalf("writing hash file: %v", err)
	}
	var cases []cmdrCase
	for _, rt := range specNoArgumentCommands {
		cases = append(cases, cmdrCase{name: rt, args: []string{rt}, requestType: rt,
			want: map[string]any{"RequestType": rt}})
	}
	cases = append(cases, []cmdrCase{
		{name: "DeviceInformation/default", args: []string{"DeviceInformation"}, requestType: "DeviceInformation"},
		{name: "DeviceInformation/queries", args: []string{"DeviceInformation", "SerialNumber", "OSVersion"},
			requestType: "DeviceInformation", params: map[string]string{"queries": "SerialNumber OSVersion"},
			want: map[string]any{"RequestType": "DeviceInformation", "Queries": []any{"SerialNumber", "OSVersion"}}},
		{name: "InstallProfile/file", args: []string{"InstallProfile", repoFile(t, "docs/enroll.mobileconfig")},
			requestType: "InstallProfile", params: map[string]string{"profile": string(profile)},
			want: map[string]any{"RequestType": "InstallProfile", "Payload": profile}},
		{name: "InstallProfile/stdin", args: []string{"InstallProfile", "-"}, stdin: profile,
			requestType: "InstallProfile", params: map[string]string{"profile": string(profile)},
			want: map[string]any{"RequestType": "InstallProfile", "Payload": profile}},
		{name: "RemoveProfile", args: []string{"RemoveProfile", "com.example.wifi"}, requestType: "RemoveProfile",
			params: map[string]string{"identifier": "com.example.wifi"},
			want:   map[string]any{"RequestType": "RemoveProfile", "Identifier": "com.example.wifi"}},
		{name: "ScheduleOSUpdate/default", args: []string{"ScheduleOSUpdate"}, requestType: "ScheduleOSUpdate",
			want: map[string]any{"RequestType": "ScheduleOSUpdate",
				"Updates": []any{map[string]any{"InstallAction": "Default"}}}},
		{name: "ScheduleOSUpdate/options", args: []string{"ScheduleOSUpdate", "--action", "InstallLater",
			"--product-version", "14.5", "--product-key", "MSU_UPDATE_23F79_patch_14.5",
			"--max-user-deferrals", "3", "--priority", "High"}, requestType: "ScheduleOSUpdate",
			params: map[string]string{"action": "InstallLater", "product-version": "14.5",
				"product-key": "MSU_UPDATE_23F79_patch_14.5", "max-user-deferrals": "3", "priority": "High"}},
		{name: "AccountConfiguration/default", args: []string{"AccountConfiguration"}, requestType: "AccountConfiguration",
			want: map[string]any{"RequestType": "AccountConfiguration",
				"SkipPrimarySetupAccountCreation": false, "SetPrimarySetupAccountAsRegularUser": false}},
		{name: "AccountConfiguration/admin", args: []string{"AccountConfiguration", "--skip-primary",
			"--primary-full-name", "Ann Example", "--primary-user-name", "ann", "--lock-primary",
			"--admin-short-name", "mdmadmin", "--admin-full-name", "MDM Admin",
			"--admin-password-hash", hashFile, "--admin-hidden"}, requestType: "AccountConfiguration",
			params: map[string]string{"skip-primary": "on", "primary-full-name": "Ann Example",
				"primary-user-name": "ann", "lock-primary": "on", "admin-short-name": "mdmadmin",
				"admin-full-name": "MDM Admin", "admin-password-hash": string(hash), "admin-hidden": "on"}},
		{name: "Settings", args: []string{"Settings", "--device-name", "Kiosk 7", "--hostname", "kiosk-7",
			"--bluetooth", "off", "--data-roaming", "on", "--voice-roaming", "on", "--personal-hotspot", "off",
			"--maximum-resident-users", "4"}, requestType: "Settings",
			params: map[string]string{"device-name": "Kiosk 7", "hostname": "kiosk-7", "bluetooth": "off",
				"data-roaming": "on", "voice-roaming": "on", "personal-hotspot": "off", "maximum-resident-users": "4"}},
		{name: "EraseDevice/plain", args: []string{"EraseDevice"}, requestType: "EraseDevice",
			want: map[string]any{"RequestType": "EraseDevice"}},
		{name: "EraseDevice/pin", args: []string{"EraseDevice", "123456", "--preserve-data-plan",
			"--disallow-proximity-setup", "--obliteration-behavior", "DoNotObliterate"}, requestType: "EraseDevice",
			params: map[string]string{"pin": "123456", "preserve-data-plan": "on",
				"disallow-proximity-setup": "on", "obliteration-behavior": "DoNotObliterate"}},
		{name: "DeviceLock/plain", args: []string{"DeviceLock"}, requestType: "DeviceLock",
			want: map[string]any{"RequestType": "DeviceLock"}},
		{name: "DeviceLock/pin", args: []string{"DeviceLock", "654321", "--message", "Call IT", "--phone-number", "+1 555 0100"},
			requestType: "DeviceLock", params: map[string]string{"pin": "654321", "message": "Call IT", "phone-number": "+1 555 0100"},
			want: map[string]any{"RequestType": "DeviceLock", "PIN": "654321",
				"Message": "Call IT", "PhoneNumber": "+1 555 0100"}},
		{name: "command", args: []string{"command", "InstalledApplicationList"}, requestType: "InstalledApplicationList",
			params: map[string]string{"request-type": "InstalledApplicationList"},
			want:   map[string]any{"RequestType": "InstalledApplicationList"}},
	}...)
	for i := 0; i < 5; i++ {
		cases = append(cases, cmdrCase{name: fmt.Sprintf("random/%d", i), args: []string{"-r"}})
	}
	return cases
}

// TestCmdr runs every sub-command of tools/cmdr.py, checks that the plist
// it prints is a command our enqueue API accepts and the same command the
// Go template of that name builds (package mdm/commands, whose tests check
// the templates against Apple's schemas), enqueues each through the real
// handler, and lets a simulated device fetch and acknowledge them all,
// byte for byte.
func TestCmdr(t *testing.T) {
	var templates []string
	for _, tmpl := range commands.Templates() {
		templates = append(templates, tmpl.Name)
		if tmpl.ReadOnly != readOnlyCommands[tmpl.Name] {
			t.Errorf("template %s: ReadOnly %v, cmdr.py -r says %v", tmpl.Name, tmpl.ReadOnly, readOnlyCommands[tmpl.Name])
		}
	}

	// Every sub-command cmdr.py offers is one of SPEC §1.3 and a Go
	// template, and has a case.
	code, out, stderr := runCmdr(t, nil, "-l")
	if code != 0 {
		t.Fatalf("cmdr.py -l exited %d: %s", code, stderr)
	}
	listed := strings.Fields(string(out))
	spec := append(append([]string{}, specNoArgumentCommands...), specArgumentCommands...)
	sort.Strings(spec)
	sort.Strings(listed)
	if !reflect.DeepEqual(listed, spec) {
		t.Errorf("cmdr.py -l lists\n%v\nwant the sub-commands of SPEC §1.3\n%v", listed, spec)
	}
	sort.Strings(templates)
	if !reflect.DeepEqual(templates, spec) {
		t.Errorf("package commands has the templates\n%v\nwant the sub-commands of SPEC §1.3\n%v", templates, spec)
	}

	srv := newEnqueueServer(t)
	type sent struct {
		uuid, requestType string
		raw               []byte
	}
	var queued []sent
	covered := map[string]bool{}
	for i, tc := range cmdrCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			uuid := fmt.Sprintf("cmdr-test-%02d-%s", i, strings.ReplaceAll(tc.name, "/", "-"))
			code, out, stderr := runCmdr(t, tc.stdin, append([]string{"-u", uuid}, tc.args...)...)
			if code != 0 || stderr != "" {
				t.Fatalf("cmdr.py %v exited %d, stderr %q", tc.args, code, stderr)
			}
			cmd, err := mdm.DecodeCommand(out)
			if err != nil {
				t.Fatalf("output is not a command plist: %v\n%s", err, out)
			}
			if cmd.CommandUUID != uuid {
				t.Errorf("CommandUUID = %q, want %q (-u)", cmd.CommandUUID, uuid)
			}
			rt := cmd.Command.RequestType
			if tc.requestType != "" && rt != tc.requestType {
				t.Errorf("RequestType = %q, want %q", rt, tc.requestType)
			}
			if tc.args[0] == "-r" && !readOnlyCommands[rt] {
				t.Errorf("-r printed %q, which is not a read-only command", rt)
			}
			if tc.args[0] != "-r" {
				covered[tc.args[0]] = true
			}

			var whole map[string]any
			if err := plist.Unmarshal(out, &whole); err != nil {
				t.Fatalf("decoding output plist: %v", err)
			}
			if len(whole) != 2 {
				t.Errorf("top-level keys %v, want only CommandUUID and Command", keysOf(whole))
			}
			body, _ := whole["Command"].(map[string]any)
			if tc.want != nil && !reflect.DeepEqual(body, tc.want) {
				t.Errorf("Command = %#v\nwant %#v", body, tc.want)
			}
			name := tc.args[0]
			if name == "-r" {
				name = rt
			}
			goCmd, err := commands.Build(name, uuid, tc.params)
			if err != nil {
				t.Fatalf("Go template %s: %v", name, err)
			}
			var goWhole map[string]any
			if err := plist.Unmarshal(goCmd.Raw, &goWhole); err != nil {
				t.Fatalf("decoding the Go template's plist: %v", err)
			}
			if !reflect.DeepEqual(whole, goWhole) {
				t.Errorf("cmdr.py printed\n%#v\nthe Go template %s builds\n%#v", whole, name, goWhole)
			}

			srv.enqueue(t, out, uuid, rt)
			queued = append(queued, sent{uuid: uuid, requestType: rt, raw: out})
		})
	}
	for _, sub := range listed {
		if !covered[sub] {
			t.Errorf("sub-command %s has no test case", sub)
		}
	}

	// The device fetches every command, in enqueue order, exactly as cmdr.py printed it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got, err := srv.device.Channel.Drain(ctx, simulator.Acknowledge, 0)
	if err != nil {
		t.Fatalf("device fetching commands: %v", err)
	}
	if len(got) != len(queued) {
		t.Fatalf("device got %d commands, want the %d enqueued", len(got), len(queued))
	}
	for i, c := range got {
		if c.CommandUUID != queued[i].uuid || c.Command.RequestType != queued[i].requestType {
			t.Errorf("command %d: got %s %s, want %s %s", i, c.CommandUUID, c.Command.RequestType, queued[i].uuid, queued[i].requestType)
		}
		if !bytes.Equal(c.Raw, queued[i].raw) {
			t.Errorf("command %d (%s): the device got other bytes than cmdr.py printed", i, c.CommandUUID)
		}
	}
}

// TestCmdrIDsFile sends a command with --ids-file, as a multipart form
// to /v1/enqueue, and wants the server's answer printed (exit 1 for a
// 207) and the command queued for the known device.
func TestCmdrIDsFile(t *testing.T) {
	srv := newEnqueueServer(t)
	idsFile := filepath.Join(t.TempDir(), "ids.txt")
	if err := os.WriteFile(idsFile, []byte("\n "+srv.device.UDID()+" \r\nUNKNOWN-ID\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python3(t), repoFile(t, "tools/cmdr.py"), "-u", "cmdr-form-1", "--ids-file", idsFile, "--nopush", "ProfileList")
	cmd.Env = append(os.Environ(), "NANOCTL_URL="+srv.url, "NANOCTL_KEY=k")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("cmdr.py --ids-file: %v, want exit 1 (some IDs failed); stderr %q", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "answered 207") {
		t.Errorf("stderr %q does not name the 207", stderr.String())
	}
	var answer api.Response
	if err := json.Unmarshal(stdout.Bytes(), &answer); err != nil {
		t.Fatalf("decoding the printed answer %q: %v", stdout.String(), err)
	}
	if answer.CommandUUID != "cmdr-form-1" || !answer.NoPush || len(answer.Status) != 1 || answer.Status["UNKNOWN-ID"] == nil {
		t.Errorf("answer %+v, want command cmdr-form-1, no_push and an error for UNKNOWN-ID only", answer)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got, err := srv.device.Channel.Drain(ctx, simulator.Acknowledge, 0)
	if err != nil {
		t.Fatalf("device fetching commands: %v", err)
	}
	if len(got) != 1 || got[0].CommandUUID != "cmdr-form-1" {
		t.Errorf("device got %d commands (%v), want cmdr-form-1", len(got), got)
	}
}

// TestCmdrUsageErrors checks that mistakes exit 2 with a message and no plist.
func TestCmdrUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"no command", nil, "no COMMAND"},
		{"random with command", []string{"-r", "ProfileList"}, "-r"},
		{"unknown command", []string{"FlyToTheMoon"}, "invalid choice"},
		{"InstallProfile without file", []string{"InstallProfile"}, "FILE"},
		{"InstallProfile missing file", []string{"InstallProfile", filepath.Join(t.TempDir(), "nope.mobileconfig")}, "reading"},
		{"InstallProfile empty", []string{"InstallProfile", "-"}, "empty"},
		{"RemoveProfile without identifier", []string{"RemoveProfile"}, "IDENTIFIER"},
		{"Settings without settings", []string{"Settings"}, "at least one setting"},
		{"Settings bad switch", []string{"Settings", "--bluetooth", "maybe"}, "on or off"},
		{"ScheduleOSUpdate bad action", []string{"ScheduleOSUpdate", "--action", "Now"}, "invalid choice"},
		{"admin without hash", []string{"AccountConfiguration", "--admin-short-name", "x"}, "go together"},
		{"command without type", []string{"command"}, "REQUESTTYPE"},
		{"command empty type", []string{"command", " "}, "empty REQUESTTYPE"},
		{"empty uuid", []string{"-u", "", "ProfileList"}, "empty -u"},
		{"nopush without ids file", []string{"--nopush", "ProfileList"}, "go with --ids-file"},
		{"ids file without url", []string{"--ids-file", "-", "--url", "", "ProfileList"}, "NANOCTL_URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, stderr := runCmdr(t, nil, tc.args...)
			if code != 2 {
				t.Errorf("exit code %d, want 2; stderr %q", code, stderr)
			}
			if len(out) != 0 {
				t.Errorf("printed %q on a usage error, want nothing", out)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr %q does not mention %q", stderr, tc.want)
			}
		})
	}
}

func keysOf(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
