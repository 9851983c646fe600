// Package config owns pgswitch-edge's configuration: the YAML file's shape,
// its defaults (HAProxy's, where HAProxy has one), ${ENV} expansion and
// validation that names the key at fault.
//
// It does not open sockets, read certificates or apply a configuration.
package config
