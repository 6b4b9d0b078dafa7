package mdm_test

import (
	"strings"
	"testing"

	"github.com/groob/plist"

	"github.com/nanomdm/nanomdm/internal/fixture"
	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/storage/storagetest"
)

// benchReport is a DeviceInformation answer of the size an iPhone sends
// (about 4 KB of XML), built by plist.Marshal the way devices lay it out.
func benchReport(b *testing.B, binary bool) []byte {
	b.Helper()
	q := map[string]any{}
	for i, k := range strings.Fields(`UDID DeviceName OSVersion BuildVersion ModelName Model ProductName
		SerialNumber IMEI MEID ModemFirmwareVersion EASDeviceIdentifier WiFiMAC BluetoothMAC ICCID
		CurrentCarrierNetwork SubscriberCarrierNetwork CarrierSettingsVersion PhoneNumber TimeZone
		LastCloudBackupDate SupplementalBuildVersion`) {
		q[k] = strings.Repeat("x", 10+i%20)
	}
	for _, k := range strings.Fields(`IsSupervised IsDeviceLocatorServiceEnabled IsActivationLockEnabled
		IsDoNotDisturbInEffect IsCloudBackupEnabled IsMDMLostModeEnabled IsMultiUser IsRoaming`) {
		q[k] = true
	}
	q["DeviceCapacity"], q["AvailableDeviceCapacity"], q["BatteryLevel"] = 119.2, 71.58, 0.87
	if binary { // the test encoder has no reals
		q["DeviceCapacity"], q["AvailableDeviceCapacity"], q["BatteryLevel"] = "119.2", "71.58", "0.87"
	}
	q["OSUpdateSettings"] = map[string]any{"AutoCheckEnabled": true, "PreviousScanResult": 0,
		"CatalogURL": "", "PreviousScanDate": "2024-06-02T08:00:00Z"}
	q["ServiceSubscriptions"] = []any{map[string]any{"Slot": "CTSubscriptionSlotOne", "IsDataPreferred": true}}
	m := map[string]any{
		"UDID": "66ADE930-5FDF-5EC4-8429-15640684C489", "Status": "Acknowledged",
		"CommandUUID": "76eda240-5488-4989-8339-f2ae160113c4", "RequestType": "DeviceInformation",
		"QueryResponses": q,
	}
	if binary {
		raw, err := storagetest.EncodeBinaryPlist(m)
		if err != nil {
			b.Fatal(err)
		}
		return raw
	}
	raw, err := plist.Marshal(m)
	if err != nil {
		b.Fatal(err)
	}
	return raw
}

// BenchmarkDecodeCheckin decodes real check-in captures:
//
//	go test -run '^$' -bench 'Decode(Checkin|CommandResults)' ./mdm/
func BenchmarkDecodeCheckin(b *testing.B) {
	for _, name := range []string{"Authenticate.1.plist", "TokenUpdate.1.plist"} {
		raw := fixture.Read(b, name)
		b.Run(strings.TrimSuffix(name, ".plist"), func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := mdm.DecodeCheckin(raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecodeCommandResults decodes command reports: a real Idle
// capture, a realistic DeviceInformation answer as XML (what devices
// send) and as a binary plist (the general path), and an Error report
// (the general path, for its ErrorChain).
func BenchmarkDecodeCommandResults(b *testing.B) {
	errorReport := []byte(`<?xml version="1.0" encoding="UTF-8"?>
<plist version="1.0">
<dict>
	<key>CommandUUID</key><string>76eda240-5488-4989-8339-f2ae160113c4</string>
	<key>ErrorChain</key><array><dict><key>ErrorCode</key><integer>12021</integer>
	<key>ErrorDomain</key><string>MCMDMErrorDomain</string></dict></array>
	<key>Status</key><string>Error</string>
	<key>UDID</key><string>66ADE930-5FDF-5EC4-8429-15640684C489</string>
</dict>
</plist>
`)
	for _, tc := range []struct {
		name string
		raw  []byte
	}{
		{"idle-capture", fixture.Read(b, "IdleReport.plist")},
		{"deviceinformation-xml", benchReport(b, false)},
		{"deviceinformation-binary", benchReport(b, true)},
		{"error-xml", errorReport},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(tc.raw)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := mdm.DecodeCommandResults(tc.raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
