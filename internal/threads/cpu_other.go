//go:build !unix

package threads

import "time"

// processCPU is not measured here: only waits widen the threads.
func processCPU() (time.Duration, bool) { return 0, false }
