package pool

import "time"

// epoch anchors monotime.
var epoch = time.Now()

// monotime is a reading of the monotonic clock in nanoseconds, never 0 (0
// means "not set"). The forwarding path reads the clock several times per
// unit of work for its statistics; time.Since on a time that carries a
// monotonic reading asks the clock once, where time.Now asks twice (wall
// and monotonic).
func monotime() int64 { return int64(time.Since(epoch)) + 1 }
