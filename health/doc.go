// Package health owns what pgswitch knows about its servers: their roles,
// whether they are up, and replica lag, published as immutable snapshots that
// sessions read without locks.
//
// It does not route queries or hold pooled connections.
package health
