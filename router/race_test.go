//go:build race

package router

// raceEnabled: the race detector's sync.Pool drops items at random, so
// allocation counts that rely on one do not hold.
const raceEnabled = true
