package mdm

import "github.com/nanomdm/nanomdm/mdm/internal/plistcheck"

// checkBounds rejects plists that exceed our nesting and element bounds,
// or whose binary structure is malformed, before they reach the plist
// decoder (which trusts its input).
func checkBounds(data []byte) error {
	return plistcheck.Check(data, plistcheck.DefaultLimits)
}
