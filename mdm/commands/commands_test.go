package commands_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/groob/plist"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/mdm/commands"
)

// schemaDir holds Apple's MDM command schemas (MIT licensed, LICENSE.txt
// in testdata/apple-device-management).
const schemaDir = "testdata/apple-device-management/mdm/commands"

// commandSchema is what Apple's YAML says about one RequestType.
type commandSchema struct {
	file      string
	topKeys   map[string]bool // keys directly in the Command dictionary
	innerKeys map[string]bool // every key named anywhere in payloadkeys
}

var (
	requestTypeLine = regexp.MustCompile(`(?m)^\s+requesttype:\s*(\S+)\s*$`)
	topKeyLine      = regexp.MustCompile(`^- key:\s*(\S+)\s*$`)
	anyKeyLine      = regexp.MustCompile(`^\s*- key:\s*(\S+)\s*$`)
)

// loadSchemas indexes Apple's command YAML files by RequestType. The files
// have a fixed layout: "payload:" holds "requesttype:", and "payloadkeys:"
// lists the Command dictionary's keys as "- key: NAME" (top level
// unindented, nested ones indented).
func loadSchemas(t *testing.T) map[string]*commandSchema {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(schemaDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no command schemas in %s: %v", schemaDir, err)
	}
	schemas := map[string]*commandSchema{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("reading %s: %v", f, err)
		}
		m := requestTypeLine.FindSubmatch(b)
		if m == nil {
			continue
		}
		s := &commandSchema{file: filepath.Base(f), topKeys: map[string]bool{}, innerKeys: map[string]bool{}}
		in := false
		for _, line := range strings.Split(string(b), "\n") {
			if line != "" && line[0] != ' ' && line[0] != '-' {
				in = strings.HasPrefix(line, "payloadkeys:")
				continue
			}
			if !in {
				continue
			}
			if k := topKeyLine.FindStringSubmatch(line); k != nil {
				s.topKeys[k[1]] = true
			}
			if k := anyKeyLine.FindStringSubmatch(line); k != nil {
				s.innerKeys[k[1]] = true
			}
		}
		schemas[string(m[1])] = s
	}
	if len(schemas) < 50 {
		t.Fatalf("found only %d request types in %s: the schema layout changed?", len(schemas), schemaDir)
	}
	return schemas
}

// checkAgainstSchema checks that a Command dictionary uses only keys that
// Apple's schema names for its RequestType: top-level keys exactly, keys
// of nested dictionaries, DeviceInformation queries and Settings items
// anywhere in the schema's payload keys.
func checkAgainstSchema(t *testing.T, body map[string]any, s *commandSchema) {
	t.Helper()
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, inner := range v {
				if k == "Item" {
					if item, ok := inner.(string); ok && !s.innerKeys[item] {
						t.Errorf("%s: Settings item %q is not in %s", path, item, s.file)
					}
				} else if !s.innerKeys[k] {
					t.Errorf("%s: key %q is not in %s", path, k, s.file)
				}
				walk(path+"."+k, inner)
			}
		case []any:
			for i, inner := range v {
				walk(fmt.Sprintf("%s[%d]", path, i), inner)
			}
		}
	}
	for k, v := range body {
		if k == "RequestType" {
			continue
		}
		if !s.topKeys[k] {
			t.Errorf("Command key %q is not a payload key of %s", k, s.file)
		}
		if k == "Queries" {
			qs, _ := v.([]any)
			for _, q := range qs {
				if name, _ := q.(string); !s.innerKeys[name] {
					t.Errorf("DeviceInformation query %q is not in %s", q, s.file)
				}
			}
			continue
		}
		walk("Command."+k, v)
	}
}

// fullParams gives every parameter of t a valid value.
func fullParams(t commands.Template) map[string]string {
	params := map[string]string{}
	for _, p := range t.Params {
		v := "some " + p.Name
		switch {
		case len(p.Choices) > 0:
			v = p.Choices[len(p.Choices)-1]
		case p.Kind == commands.Bool:
			v = "on"
		case p.Kind == commands.Int:
			v = "3"
		case p.Kind == commands.List:
			v = "SerialNumber, OSVersion"
		case p.Name == "request-type":
			v = "InstalledApplicationList"
		}
		params[p.Name] = v
	}
	return params
}

// decode returns the whole plist of cmd.
func decode(t *testing.T, cmd *mdm.Command) map[string]any {
	t.Helper()
	var whole map[string]any
	if err := plist.Unmarshal(cmd.Raw, &whole); err != nil {
		t.Fatalf("decoding built plist: %v\n%s", err, cmd.Raw)
	}
	return whole
}

// TestTemplatesMatchSchemas builds every template with no parameters
// (where allowed) and with all of them, and checks the plist against
// Apple's schema for its RequestType.
func TestTemplatesMatchSchemas(t *testing.T) {
	t.Parallel()
	schemas := loadSchemas(t)
	for _, tmpl := range commands.Templates() {
		cases := map[string]map[string]string{"all": fullParams(tmpl)}
		if !anyRequired(tmpl) && tmpl.Name != "Settings" && tmpl.Name != "AccountConfiguration" {
			cases["none"] = nil
		}
		for name, params := range cases {
			t.Run(tmpl.Name+"/"+name, func(t *testing.T) {
				uuid := "test-" + tmpl.Name + "-" + name
				cmd, err := commands.Build(tmpl.Name, uuid, params)
				if err != nil {
					t.Fatalf("Build(%s, %v): %v", tmpl.Name, params, err)
				}
				if cmd.CommandUUID != uuid {
					t.Errorf("CommandUUID = %q, want %q", cmd.CommandUUID, uuid)
				}
				if _, err := mdm.DecodeCommand(cmd.Raw); err != nil {
					t.Errorf("the server would refuse the plist: %v", err)
				}
				whole := decode(t, cmd)
				if len(whole) != 2 || whole["CommandUUID"] != uuid {
					t.Errorf("plist %v, want only CommandUUID %q and Command", whole, uuid)
				}
				body, _ := whole["Command"].(map[string]any)
				rt, _ := body["RequestType"].(string)
				if rt != cmd.Command.RequestType {
					t.Errorf("Command.RequestType = %q, mdm.Command says %q", rt, cmd.Command.RequestType)
				}
				schema := schemas[rt]
				if schema == nil {
					t.Fatalf("RequestType %q is not a requesttype of any schema in %s", rt, schemaDir)
				}
				checkAgainstSchema(t, body, schema)
			})
		}
	}
}

func anyRequired(t commands.Template) bool {
	for _, p := range t.Params {
		if p.Required {
			return true
		}
	}
	return false
}

// TestBuild checks the Command dictionary of chosen templates and values.
func TestBuild(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		tmpl   string
		params map[string]string
		want   map[string]any
	}{
		{"no parameters", "ProfileList", nil, map[string]any{"RequestType": "ProfileList"}},
		{"default queries", "DeviceInformation", nil, map[string]any{"RequestType": "DeviceInformation",
			"Queries": toAny(commands.DefaultQueries)}},
		{"queries", "DeviceInformation", map[string]string{"queries": "SerialNumber OSVersion"},
			map[string]any{"RequestType": "DeviceInformation", "Queries": []any{"SerialNumber", "OSVersion"}}},
		{"profile", "InstallProfile", map[string]string{"profile": "<plist/>"},
			map[string]any{"RequestType": "InstallProfile", "Payload": []byte("<plist/>")}},
		{"remove", "RemoveProfile", map[string]string{"identifier": "com.example.wifi"},
			map[string]any{"RequestType": "RemoveProfile", "Identifier": "com.example.wifi"}},
		{"update default", "ScheduleOSUpdate", nil, map[string]any{"RequestType": "ScheduleOSUpdate",
			"Updates": []any{map[string]any{"InstallAction": "Default"}}}},
		{"update options", "ScheduleOSUpdate", map[string]string{"action": "InstallLater", "max-user-deferrals": "3", "priority": "High"},
			map[string]any{"RequestType": "ScheduleOSUpdate", "Updates": []any{map[string]any{
				"InstallAction": "InstallLater", "MaxUserDeferrals": uint64(3), "Priority": "High"}}}},
		{"accounts default", "AccountConfiguration", nil, map[string]any{"RequestType": "AccountConfiguration",
			"SkipPrimarySetupAccountCreation": false, "SetPrimarySetupAccountAsRegularUser": false}},
		{"accounts admin", "AccountConfiguration", map[string]string{"skip-primary": "yes",
			"admin-short-name": "mdmadmin", "admin-password-hash": "HASH", "lock-primary": "off"},
			map[string]any{"RequestType": "AccountConfiguration",
				"SkipPrimarySetupAccountCreation": true, "SetPrimarySetupAccountAsRegularUser": false,
				"AutoSetupAdminAccounts": []any{map[string]any{"shortName": "mdmadmin", "fullName": "mdmadmin",
					"passwordHash": []byte("HASH"), "hidden": false}}}},
		{"settings", "Settings", map[string]string{"device-name": "Kiosk 7", "bluetooth": "off"},
			map[string]any{"RequestType": "Settings", "Settings": []any{
				map[string]any{"Item": "DeviceName", "DeviceName": "Kiosk 7"},
				map[string]any{"Item": "Bluetooth", "Enabled": false}}}},
		{"erase", "EraseDevice", map[string]string{"pin": "123456", "preserve-data-plan": "on"},
			map[string]any{"RequestType": "EraseDevice", "PIN": "123456", "PreserveDataPlan": true}},
		{"lock", "DeviceLock", map[string]string{"message": "Call IT", "phone-number": ""},
			map[string]any{"RequestType": "DeviceLock", "Message": "Call IT"}},
		{"any command", "command", map[string]string{"request-type": "InstalledApplicationList"},
			map[string]any{"RequestType": "InstalledApplicationList"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd, err := commands.Build(tc.tmpl, "uuid-1", tc.params)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			body := decode(t, cmd)["Command"]
			if !reflect.DeepEqual(body, tc.want) {
				t.Errorf("Command = %#v\nwant %#v", body, tc.want)
			}
		})
	}
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// TestBuildUUID checks that a command without a given UUID gets a fresh
// one each time.
func TestBuildUUID(t *testing.T) {
	t.Parallel()
	a, err := commands.Build("ProfileList", "", nil)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	b, err := commands.Build("ProfileList", "", nil)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	uuid := regexp.MustCompile(`^[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$`)
	if !uuid.MatchString(a.CommandUUID) || a.CommandUUID == b.CommandUUID {
		t.Errorf("fresh UUIDs %q and %q, want two different upper-case version 4 UUIDs", a.CommandUUID, b.CommandUUID)
	}
	if got := decode(t, a)["CommandUUID"]; got != a.CommandUUID {
		t.Errorf("plist CommandUUID %v, want %q", got, a.CommandUUID)
	}
}

// TestBuildErrors checks that mistakes are refused with a sentinel and a
// message naming what is wrong.
func TestBuildErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, tmpl, uuid string
		params           map[string]string
		wantErr          error
		want             string // in the message
	}{
		{"unknown template", "FlyToTheMoon", "", nil, commands.ErrUnknownTemplate, `"FlyToTheMoon"`},
		{"unknown parameter", "DeviceLock", "", map[string]string{"colour": "red"}, commands.ErrInvalidParam, "pin, message, phone-number"},
		{"parameter of no-parameter command", "ProfileList", "", map[string]string{"x": "1"}, commands.ErrInvalidParam, "no parameters"},
		{"missing required", "RemoveProfile", "", nil, commands.ErrInvalidParam, `"identifier": required`},
		{"blank required", "command", "", map[string]string{"request-type": "  "}, commands.ErrInvalidParam, "request-type"},
		{"bad bool", "Settings", "", map[string]string{"bluetooth": "maybe"}, commands.ErrInvalidParam, "on or off"},
		{"bad int", "Settings", "", map[string]string{"maximum-resident-users": "many"}, commands.ErrInvalidParam, "integer"},
		{"bad choice", "ScheduleOSUpdate", "", map[string]string{"action": "Now"}, commands.ErrInvalidParam, "InstallASAP"},
		{"no settings", "Settings", "", nil, commands.ErrInvalidParam, "at least one"},
		{"admin without hash", "AccountConfiguration", "", map[string]string{"admin-short-name": "x"}, commands.ErrInvalidParam, "go together"},
		{"bad uuid", "ProfileList", "a/b", nil, mdm.ErrInvalidCommand, "CommandUUID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd, err := commands.Build(tc.tmpl, tc.uuid, tc.params)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Build = %v, %v; want an error wrapping %v", cmd, err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

// TestLookup checks that every listed template is found by name and that
// parameter descriptions are complete.
func TestLookup(t *testing.T) {
	t.Parallel()
	for _, tmpl := range commands.Templates() {
		got, ok := commands.Lookup(tmpl.Name)
		if !ok || got.Name != tmpl.Name {
			t.Errorf("Lookup(%q) = %q, %v", tmpl.Name, got.Name, ok)
		}
		if tmpl.Help == "" {
			t.Errorf("%s has no help", tmpl.Name)
		}
		for _, p := range tmpl.Params {
			if p.Name == "" || p.Help == "" || p.Kind == "" {
				t.Errorf("%s: parameter %+v lacks a name, help or kind", tmpl.Name, p)
			}
		}
	}
	if _, ok := commands.Lookup("nope"); ok {
		t.Error("Lookup(nope) found a template")
	}
}
