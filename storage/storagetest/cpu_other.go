//go:build !unix

package storagetest

// CPUTime is not measured on this platform.
func CPUTime() int64 { return 0 }
