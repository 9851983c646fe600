package httpproxy

import "time"

// deadline is the read or write deadline last set on a connection. Setting
// one modifies a runtime timer under the poller's lock; a keep-alive
// connection that moved its deadlines by the same timeout on every request
// did so four times per request (client and server side, read and write).
// arm leaves a deadline in place that is no earlier than wanted and at most
// slack later, so that it moves once per slack instead: a timeout of d
// fires between d and d+d/16 (slackOf) after what it times.
type deadline struct{ at time.Time }

// slackOf is how much later than its duration d a timeout may fire.
func slackOf(d time.Duration) time.Duration { return d / 16 }

// arm returns the deadline to set on the connection for want (zero: none)
// and whether it must be set at all.
func (d *deadline) arm(want time.Time, slack time.Duration) (time.Time, bool) {
	if want.IsZero() || slack <= 0 {
		if d.at.Equal(want) {
			return want, false
		}
		d.at = want
		return want, true
	}
	if !d.at.IsZero() && !d.at.Before(want) && !d.at.After(want.Add(slack)) {
		return d.at, false
	}
	d.at = want.Add(slack)
	return d.at, true
}

// set records a deadline set on the connection directly.
func (d *deadline) set(t time.Time) { d.at = t }
