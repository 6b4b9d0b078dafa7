package simulator

import (
	"fmt"

	"github.com/nanomdm/nanomdm/mdm"
)

// RealisticRequestTypes are the commands RealisticAcknowledge answers with
// a full result body; the load tool enqueues them in turn.
var RealisticRequestTypes = []string{
	"DeviceInformation", "ProfileList", "SecurityInfo", "InstalledApplicationList", "CertificateList",
}

// RealisticAcknowledge answers a command Acknowledged with a result body of
// the shape and size an iPhone sends (2 to 6 KB of XML for the commands in
// RealisticRequestTypes), so that servers are measured on the reports they
// will really decode and store. Other commands get a bare acknowledgement.
func (c *Channel) RealisticAcknowledge(cmd *mdm.Command) Report {
	r := Report{CommandUUID: cmd.CommandUUID, Status: mdm.StatusAcknowledged, RequestType: cmd.Command.RequestType}
	switch cmd.Command.RequestType {
	case "DeviceInformation":
		r.Extra = map[string]any{"QueryResponses": c.deviceInformation()}
	case "ProfileList":
		r.Extra = map[string]any{"ProfileList": profileList()}
	case "SecurityInfo":
		r.Extra = map[string]any{"SecurityInfo": securityInfo()}
	case "InstalledApplicationList":
		r.Extra = map[string]any{"InstalledApplicationList": installedApplications()}
	case "CertificateList":
		r.Extra = map[string]any{"CertificateList": c.certificateList()}
	}
	return r
}

// ErrorAnswer answers a command Error with the ErrorChain a device sends
// when it cannot carry a command out.
func ErrorAnswer(cmd *mdm.Command) Report {
	return Report{
		CommandUUID: cmd.CommandUUID, Status: mdm.StatusError, RequestType: cmd.Command.RequestType,
		Extra: map[string]any{"ErrorChain": []any{
			map[string]any{
				"ErrorCode":            12021,
				"ErrorDomain":          "MCMDMErrorDomain",
				"LocalizedDescription": "The device could not perform the request.",
				"USEnglishDescription": "The device could not perform the request.",
			},
		}},
	}
}

// NotNowAnswer answers a command NotNow, as a locked device does for
// commands that need it unlocked.
func NotNowAnswer(cmd *mdm.Command) Report {
	return Report{CommandUUID: cmd.CommandUUID, Status: mdm.StatusNotNow, RequestType: cmd.Command.RequestType}
}

func (c *Channel) deviceInformation() map[string]any {
	d := c.Device
	return map[string]any{
		"UDID":                          d.UDID(),
		"DeviceName":                    "Simulated " + d.Serial,
		"OSVersion":                     "17.5.1",
		"BuildVersion":                  "21F90",
		"ModelName":                     "iPhone",
		"Model":                         "MLPF3LL/A",
		"ModelNumber":                   "MLPF3",
		"ProductName":                   "iPhone14,2",
		"SerialNumber":                  d.Serial,
		"DeviceCapacity":                119.20,
		"AvailableDeviceCapacity":       71.58,
		"BatteryLevel":                  0.87,
		"CellularTechnology":            3,
		"IMEI":                          "35 404907 123456 1",
		"MEID":                          "35404907123456",
		"ModemFirmwareVersion":          "3.60.01",
		"IsSupervised":                  true,
		"IsDeviceLocatorServiceEnabled": true,
		"IsActivationLockEnabled":       false,
		"IsDoNotDisturbInEffect":        false,
		"IsCloudBackupEnabled":          true,
		"IsMDMLostModeEnabled":          false,
		"IsMultiUser":                   false,
		"IsNetworkTethered":             false,
		"IsRoaming":                     false,
		"DataRoamingEnabled":            false,
		"VoiceRoamingEnabled":           true,
		"PersonalHotspotEnabled":        false,
		"EASDeviceIdentifier":           "SEC1" + d.Serial + "0000",
		"WiFiMAC":                       "a4:83:e7:12:34:56",
		"BluetoothMAC":                  "a4:83:e7:12:34:57",
		"EthernetMACs":                  []any{},
		"ICCID":                         "8901 4104 2792 3456 7890",
		"CurrentCarrierNetwork":         "Carrier",
		"SubscriberCarrierNetwork":      "Carrier",
		"CarrierSettingsVersion":        "57.0",
		"PhoneNumber":                   "+1 555 0100",
		"SIMCarrierNetwork":             "Carrier",
		"LastCloudBackupDate":           "2024-06-01T02:13:44Z",
		"AwaitingConfiguration":         false,
		"SupplementalBuildVersion":      "21F90",
		"SupplementalOSVersionExtra":    "",
		"TimeZone":                      "America/New_York",
		"OSUpdateSettings": map[string]any{
			"AutoCheckEnabled":                 true,
			"AutomaticAppInstallationEnabled":  true,
			"AutomaticOSInstallationEnabled":   false,
			"AutomaticSecurityUpdatesEnabled":  true,
			"BackgroundDownloadEnabled":        true,
			"CatalogURL":                       "",
			"IsDefaultCatalog":                 true,
			"PreviousScanDate":                 "2024-06-02T08:00:00Z",
			"PreviousScanResult":               0,
			"PerformPeriodicCheck":             true,
			"AutomaticAppInstallationManaged":  false,
			"AutomaticOSInstallationManaged":   false,
			"AutomaticSecurityUpdatesManaged":  false,
			"BackgroundDownloadManaged":        false,
			"AutoCheckManaged":                 false,
			"AutomaticCheckForUpdatesManaged":  false,
			"AutomaticallyInstallAppUpdates":   true,
			"AutomaticallyInstallMacOSUpdates": false,
		},
		"ServiceSubscriptions": []any{
			map[string]any{
				"CarrierSettingsVersion": "57.0", "CurrentCarrierNetwork": "Carrier",
				"ICCID": "8901 4104 2792 3456 7890", "IMEI": "35 404907 123456 1",
				"IsDataPreferred": true, "IsRoaming": false, "IsVoicePreferred": true,
				"Label": "Primary", "LabelID": "3F1C4A52-7A1B-4C7E-9C55-3E2B9B2D9E11",
				"PhoneNumber": "+1 555 0100", "Slot": "CTSubscriptionSlotOne",
			},
		},
		"MDMOptions": map[string]any{
			"ActivationLockAllowedWhileSupervised":             false,
			"PromptUserToAllowBootstrapTokenForAuthentication": false,
		},
	}
}

func profileList() []any {
	var out []any
	for i, name := range []string{"Wi-Fi", "Restrictions", "VPN", "Mail", "Root certificates"} {
		id := fmt.Sprintf("com.example.profile.%d", i)
		out = append(out, map[string]any{
			"HasRemovalPasscode":       false,
			"IsEncrypted":              false,
			"IsManaged":                true,
			"PayloadDescription":       name + " settings from the organization",
			"PayloadDisplayName":       name,
			"PayloadIdentifier":        id,
			"PayloadOrganization":      "Example Org",
			"PayloadRemovalDisallowed": true,
			"PayloadUUID":              fmt.Sprintf("6E4D3C2B-1A09-4F8E-8D7C-6B5A4938271%d", i),
			"PayloadVersion":           1,
			"PayloadContent": []any{
				map[string]any{
					"PayloadDescription": name + " payload",
					"PayloadDisplayName": name,
					"PayloadIdentifier":  id + ".payload",
					"PayloadType":        "com.apple." + fmt.Sprint(i),
				},
			},
		})
	}
	return out
}

func securityInfo() map[string]any {
	return map[string]any{
		"HardwareEncryptionCaps":           3,
		"PasscodeCompliant":                true,
		"PasscodeCompliantWithProfiles":    true,
		"PasscodeLockGracePeriodEnforced":  0,
		"PasscodePresent":                  true,
		"ManagementStatus":                 map[string]any{"EnrolledViaDEP": true, "IsUserEnrollment": false, "UserApprovedEnrollment": true},
		"FDE_Enabled":                      false,
		"FirewallSettings":                 map[string]any{"FirewallEnabled": false, "BlockAllIncoming": false, "StealthMode": false},
		"SystemIntegrityProtectionEnabled": true,
	}
}

func installedApplications() []any {
	var out []any
	for i, name := range []string{
		"Mail", "Calendar", "Slack", "Zoom", "Outlook", "Teams", "Chrome", "Authenticator",
		"Notion", "Box", "Dropbox", "Webex", "Salesforce", "Workday", "Concur", "Okta Verify",
	} {
		out = append(out, map[string]any{
			"BundleSize":                int64(40_000_000 + i*3_000_000),
			"DynamicSize":               int64(12_000_000 + i*1_000_000),
			"Identifier":                fmt.Sprintf("com.example.app%d", i),
			"Installing":                false,
			"IsAppClip":                 false,
			"IsValidated":               true,
			"Name":                      name,
			"ShortVersion":              fmt.Sprintf("%d.%d", 4+i%3, i),
			"Version":                   fmt.Sprintf("%d%02d", 4+i%3, i),
			"ExternalVersionIdentifier": int64(860_000_000 + i),
		})
	}
	return out
}

func (c *Channel) certificateList() []any {
	var der []byte
	if id := c.Device.Identity; id != nil && id.Cert != nil {
		der = id.Cert.Raw
	}
	return []any{
		map[string]any{"CommonName": c.Device.UDID(), "Data": der, "IsIdentity": true},
		map[string]any{"CommonName": "Example Root CA", "Data": der, "IsIdentity": false},
	}
}
