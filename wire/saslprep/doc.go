// Package saslprep prepares passwords for SCRAM-SHA-256 exactly as
// PostgreSQL does (RFC 4013 SASLprep, as PostgreSQL's pg_saslprep applies
// it, with its fallback to the password's own bytes), so that the keys
// pgswitch derives from a configured password are those PostgreSQL and libpq
// derive from it.
//
// It does not run SCRAM exchanges (package wire does) and leaves user names
// alone, as PostgreSQL does.
package saslprep
