package mdm

// checkBounds rejects plists that exceed our nesting and size bounds
// before they reach the plist decoder.
func checkBounds(data []byte) error {
	return nil // TODO: wire plistcheck
}
