// Package testpki makes throw-away certificate authorities and certificates
// for tests: a CA, leaf certificates for chosen names, expired ones, written
// as PEM files where a test needs files.
//
// It is for tests only; nothing in pgswitch-edge's binary imports it.
package testpki
