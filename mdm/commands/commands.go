// Package commands holds MDM command templates: the commands an operator
// queues most often, each with named parameters, built into the command
// plist that the enqueue API takes. It offers the same set as
// tools/cmdr.py, for the operator CLI and the web console alike.
package commands

import (
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/nanomdm/nanomdm/mdm"
)

// Kind is the type of a parameter's value. Values are always given as
// text; the kind says how the text is read.
type Kind string

const (
	// String is text, used as is.
	String Kind = "string"
	// Bool is on or off (also true/false, yes/no, 1/0, enable/disable).
	Bool Kind = "bool"
	// Int is a decimal integer.
	Int Kind = "int"
	// Data is bytes, usually a file's contents; it becomes plist data.
	Data Kind = "data"
	// List is a list of words separated by commas or white space.
	List Kind = "list"
)

// Param describes one parameter of a template.
type Param struct {
	Name     string `json:"name"`
	Help     string `json:"help"`
	Kind     Kind   `json:"kind"`
	Required bool   `json:"required"`
	// Choices, when not empty, are the only values allowed.
	Choices []string `json:"choices,omitempty"`
	// Default is the value used when none is given, if any.
	Default string `json:"default,omitempty"`
}

// Template is a named command with parameters. Its name is the
// RequestType it sends, except for "command", which sends any
// RequestType without other keys.
type Template struct {
	Name   string  `json:"name"`
	Help   string  `json:"help"`
	Params []Param `json:"params,omitempty"`
	// ReadOnly reports that the command only reads from the device.
	ReadOnly bool `json:"read_only,omitempty"`

	build func(a args) (map[string]any, error)
}

var (
	// ErrUnknownTemplate means no template has the given name.
	ErrUnknownTemplate = errors.New("unknown command template")
	// ErrInvalidParam means a parameter is unknown, missing or has a
	// value its kind or choices do not allow.
	ErrInvalidParam = errors.New("invalid parameter")
)

// noArgument are the commands whose Command dictionary is only their
// RequestType.
var noArgument = []string{
	"ProfileList", "ProvisioningProfileList", "CertificateList", "SecurityInfo", "RestartDevice",
	"ShutDownDevice", "StopMirroring", "ClearRestrictionsPassword", "UserList", "LogOutUser",
	"PlayLostModeSound", "DisableLostMode", "DeviceLocation", "ManagedMediaList", "DeviceConfigured",
	"AvailableOSUpdates", "NSExtensionMappings", "OSUpdateStatus", "EnableRemoteDesktop",
	"DisableRemoteDesktop", "ActivationLockBypassCode", "ScheduleOSUpdateScan",
}

// readOnly are the commands that only read from the device.
var readOnly = []string{
	"ProfileList", "ProvisioningProfileList", "CertificateList", "SecurityInfo", "UserList",
	"ManagedMediaList", "AvailableOSUpdates", "NSExtensionMappings", "OSUpdateStatus", "DeviceInformation",
}

// DefaultQueries are what DeviceInformation asks for when no queries are given.
var DefaultQueries = []string{
	"UDID", "SerialNumber", "DeviceName", "Model", "ModelName", "ProductName", "OSVersion",
	"BuildVersion", "DeviceCapacity", "AvailableDeviceCapacity", "BatteryLevel", "IsSupervised",
	"IsActivationLockEnabled",
}

var templates = newTemplates()

// Templates returns every template, in a fixed order: the commands
// without parameters first.
func Templates() []Template {
	return slices.Clone(templates)
}

// Lookup returns the template called name.
func Lookup(name string) (Template, bool) {
	for _, t := range templates {
		if t.Name == name {
			return t, true
		}
	}
	return Template{}, false
}

// Build makes the command plist of template name from params (by
// parameter name; an empty value counts as not given). The command gets
// commandUUID, or a new random UUID when commandUUID is empty. Errors wrap
// ErrUnknownTemplate or ErrInvalidParam and name the parameter.
func Build(name, commandUUID string, params map[string]string) (*mdm.Command, error) {
	t, ok := Lookup(name)
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownTemplate, name)
	}
	a, err := t.parse(params)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	keys, err := t.build(a)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	requestType := t.Name
	if t.Name == "command" {
		requestType = a.str("request-type")
	}
	if commandUUID == "" {
		commandUUID = newUUID()
	}
	cmd, err := mdm.NewCommand(commandUUID, requestType, keys)
	if err != nil {
		return nil, err
	}
	// Check what the server checks, so a bad UUID fails here.
	if _, err := mdm.DecodeCommand(cmd.Raw); err != nil {
		return nil, err
	}
	return cmd, nil
}

// args are a template's parameter values, read by kind: string, bool,
// int, []byte or []string. Parameters not given are absent.
type args map[string]any

func (a args) str(name string) string { s, _ := a[name].(string); return s }
func (a args) on(name string) bool    { b, _ := a[name].(bool); return b }

// put sets key in keys to the value of parameter name, if given.
func (a args) put(keys map[string]any, key, name string) {
	if v, ok := a[name]; ok {
		keys[key] = v
	}
}

// parse checks params against t's parameters and reads each value by kind.
func (t Template) parse(params map[string]string) (args, error) {
	for name := range params {
		if !slices.ContainsFunc(t.Params, func(p Param) bool { return p.Name == name }) {
			return nil, fmt.Errorf("%w %q: %s takes %s", ErrInvalidParam, name, t.Name, t.paramNames())
		}
	}
	a := args{}
	for _, p := range t.Params {
		text := params[p.Name]
		if strings.TrimSpace(text) == "" {
			text = p.Default
		}
		if text == "" {
			if p.Required {
				return nil, fmt.Errorf("%w %q: required", ErrInvalidParam, p.Name)
			}
			continue
		}
		if len(p.Choices) > 0 && !slices.Contains(p.Choices, text) {
			return nil, fmt.Errorf("%w %q: %q is not one of %s", ErrInvalidParam, p.Name, text, strings.Join(p.Choices, ", "))
		}
		v, err := p.Kind.read(text)
		if err != nil {
			return nil, fmt.Errorf("%w %q: %w", ErrInvalidParam, p.Name, err)
		}
		a[p.Name] = v
	}
	return a, nil
}

func (t Template) paramNames() string {
	if len(t.Params) == 0 {
		return "no parameters"
	}
	names := make([]string, len(t.Params))
	for i, p := range t.Params {
		names[i] = p.Name
	}
	return strings.Join(names, ", ")
}

// read turns text into a value of kind k.
func (k Kind) read(text string) (any, error) {
	switch k {
	case Bool:
		switch strings.ToLower(text) {
		case "on", "true", "yes", "1", "enable", "enabled":
			return true, nil
		case "off", "false", "no", "0", "disable", "disabled":
			return false, nil
		}
		return nil, fmt.Errorf("want on or off, got %q", text)
	case Int:
		n, err := strconv.Atoi(text)
		if err != nil {
			return nil, fmt.Errorf("want an integer, got %q", text)
		}
		return n, nil
	case Data:
		return []byte(text), nil
	case List:
		return strings.FieldsFunc(text, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' }), nil
	}
	return text, nil
}

// newUUID returns a random (version 4) UUID in upper case, as Apple
// writes them.
func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%X-%X-%X-%X-%X", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func onOff(name, help string) Param { return Param{Name: name, Help: help, Kind: Bool} }
func text(name, help string) Param  { return Param{Name: name, Help: help, Kind: String} }

func nothing(args) (map[string]any, error) { return map[string]any{}, nil }

func newTemplates() []Template {
	var ts []Template
	for _, name := range noArgument {
		ts = append(ts, Template{Name: name, Help: name + " (no parameters)", build: nothing})
	}
	ts = append(ts,
		Template{
			Name: "DeviceInformation", Help: "query device attributes",
			Params: []Param{{Name: "queries", Kind: List,
				Help: "attribute names to query (default: " + strings.Join(DefaultQueries, " ") + ")"}},
			build: func(a args) (map[string]any, error) {
				q, _ := a["queries"].([]string)
				if len(q) == 0 {
					q = DefaultQueries
				}
				return map[string]any{"Queries": q}, nil
			},
		},
		Template{
			Name: "InstallProfile", Help: "install a configuration profile",
			Params: []Param{{Name: "profile", Kind: Data, Required: true,
				Help: "the .mobileconfig file (signed or not)"}},
			build: func(a args) (map[string]any, error) {
				return map[string]any{"Payload": a["profile"]}, nil
			},
		},
		Template{
			Name: "RemoveProfile", Help: "remove an installed profile",
			Params: []Param{{Name: "identifier", Kind: String, Required: true,
				Help: "PayloadIdentifier of the profile to remove"}},
			build: func(a args) (map[string]any, error) {
				return map[string]any{"Identifier": a.str("identifier")}, nil
			},
		},
		Template{
			Name: "ScheduleOSUpdate", Help: "schedule a software update",
			Params: []Param{
				{Name: "action", Kind: String, Default: "Default", Help: "InstallAction",
					Choices: []string{"Default", "DownloadOnly", "InstallASAP", "NotifyOnly", "InstallLater", "InstallForceRestart"}},
				text("product-key", "ProductKey of the update (see AvailableOSUpdates)"),
				text("product-version", "ProductVersion of the update, e.g. 17.5.1"),
				{Name: "max-user-deferrals", Kind: Int, Help: "MaxUserDeferrals (macOS, with action InstallLater)"},
				{Name: "priority", Kind: String, Help: "Priority (macOS)", Choices: []string{"Low", "High"}},
			},
			build: func(a args) (map[string]any, error) {
				u := map[string]any{}
				a.put(u, "InstallAction", "action")
				a.put(u, "ProductKey", "product-key")
				a.put(u, "ProductVersion", "product-version")
				a.put(u, "MaxUserDeferrals", "max-user-deferrals")
				a.put(u, "Priority", "priority")
				return map[string]any{"Updates": []any{u}}, nil
			},
		},
		Template{
			Name: "AccountConfiguration", Help: "configure Setup Assistant accounts (macOS, automated enrollment)",
			Params: []Param{
				onOff("skip-primary", "SkipPrimarySetupAccountCreation"),
				onOff("regular-user", "SetPrimarySetupAccountAsRegularUser"),
				text("primary-full-name", "PrimaryAccountFullName"),
				text("primary-user-name", "PrimaryAccountUserName"),
				onOff("lock-primary", "LockPrimaryAccountInfo"),
				text("admin-short-name", "create a managed admin account with this short name"),
				text("admin-full-name", "full name of the managed admin account"),
				{Name: "admin-password-hash", Kind: Data,
					Help: "the account's passwordHash (a SALTED-SHA512-PBKDF2 plist), with admin-short-name"},
				onOff("admin-hidden", "hide the managed admin account"),
			},
			build: func(a args) (map[string]any, error) {
				keys := map[string]any{
					"SkipPrimarySetupAccountCreation":     a.on("skip-primary"),
					"SetPrimarySetupAccountAsRegularUser": a.on("regular-user"),
				}
				a.put(keys, "PrimaryAccountFullName", "primary-full-name")
				a.put(keys, "PrimaryAccountUserName", "primary-user-name")
				if a.on("lock-primary") {
					keys["LockPrimaryAccountInfo"] = true
				}
				short := a.str("admin-short-name")
				_, hasHash := a["admin-password-hash"]
				if (short != "") != hasHash {
					return nil, fmt.Errorf("%w: admin-short-name and admin-password-hash go together", ErrInvalidParam)
				}
				if short != "" {
					full := a.str("admin-full-name")
					if full == "" {
						full = short
					}
					keys["AutoSetupAdminAccounts"] = []any{map[string]any{
						"shortName": short, "fullName": full,
						"passwordHash": a["admin-password-hash"], "hidden": a.on("admin-hidden"),
					}}
				}
				return keys, nil
			},
		},
		Template{
			Name: "Settings", Help: "change device settings (at least one parameter)",
			Params: []Param{
				text("device-name", "DeviceName"),
				text("hostname", "HostName (macOS)"),
				onOff("bluetooth", "Bluetooth"),
				onOff("data-roaming", "DataRoaming"),
				onOff("voice-roaming", "VoiceRoaming"),
				onOff("personal-hotspot", "PersonalHotspot"),
				{Name: "maximum-resident-users", Kind: Int, Help: "MaximumResidentUsers (Shared iPad)"},
			},
			build: func(a args) (map[string]any, error) {
				var items []any
				for _, s := range []struct{ param, item, key string }{
					{"device-name", "DeviceName", "DeviceName"},
					{"hostname", "HostName", "HostName"},
					{"bluetooth", "Bluetooth", "Enabled"},
					{"data-roaming", "DataRoaming", "Enabled"},
					{"voice-roaming", "VoiceRoaming", "Enabled"},
					{"personal-hotspot", "PersonalHotspot", "Enabled"},
					{"maximum-resident-users", "MaximumResidentUsers", "MaximumResidentUsers"},
				} {
					if v, ok := a[s.param]; ok {
						items = append(items, map[string]any{"Item": s.item, s.key: v})
					}
				}
				if len(items) == 0 {
					return nil, fmt.Errorf("%w: Settings needs at least one setting, e.g. device-name", ErrInvalidParam)
				}
				return map[string]any{"Settings": items}, nil
			},
		},
		Template{
			Name: "EraseDevice", Help: "erase the device (destroys its data)",
			Params: []Param{
				text("pin", "six-digit Find My PIN (macOS)"),
				onOff("preserve-data-plan", "PreserveDataPlan"),
				onOff("disallow-proximity-setup", "DisallowProximitySetup"),
				{Name: "obliteration-behavior", Kind: String, Help: "ObliterationBehavior (macOS)",
					Choices: []string{"Default", "DoNotObliterate", "ObliterateWithWarning", "Always"}},
			},
			build: func(a args) (map[string]any, error) {
				keys := map[string]any{}
				a.put(keys, "PIN", "pin")
				if a.on("preserve-data-plan") {
					keys["PreserveDataPlan"] = true
				}
				if a.on("disallow-proximity-setup") {
					keys["DisallowProximitySetup"] = true
				}
				a.put(keys, "ObliterationBehavior", "obliteration-behavior")
				return keys, nil
			},
		},
		Template{
			Name: "DeviceLock", Help: "lock the device",
			Params: []Param{
				text("pin", "six-digit unlock PIN (macOS)"),
				text("message", "Message shown on the lock screen"),
				text("phone-number", "PhoneNumber shown on the lock screen"),
			},
			build: func(a args) (map[string]any, error) {
				keys := map[string]any{}
				a.put(keys, "PIN", "pin")
				a.put(keys, "Message", "message")
				a.put(keys, "PhoneNumber", "phone-number")
				return keys, nil
			},
		},
		Template{
			Name: "command", Help: "any other command: only its RequestType",
			Params: []Param{{Name: "request-type", Kind: String, Required: true,
				Help: "the RequestType, e.g. InstalledApplicationList"}},
			build: nothing,
		},
	)
	for i := range ts {
		ts[i].ReadOnly = slices.Contains(readOnly, ts[i].Name)
	}
	return ts
}
