// Package config owns pgswitch's YAML configuration: loading, ${ENV}
// expansion, defaults and validation, each error naming the file, the line
// and the key it concerns (Error).
//
// It does not watch files or apply a configuration; the caller decides when to
// reload and what to do with the result.
package config
