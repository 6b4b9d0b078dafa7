//go:build unix

package storagetest

import "syscall"

// CPUTime returns the user plus system CPU time of the process so far, in
// nanoseconds, or 0 if it cannot be read.
func CPUTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
