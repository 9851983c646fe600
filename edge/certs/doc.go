// Package certs owns the certificates a TLS bind serves: every certificate
// and key pair in a directory, chosen per connection by the client's SNI,
// with a default for clients that send none or an unknown name.
//
// It does not accept connections or watch the directory: a reload reads it
// again.
package certs
