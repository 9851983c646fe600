// Package router owns client sessions: it accepts and logs in clients
// (users of the configuration, or found on the servers by auth_query), reads
// their messages in batches, picks a server for each unit of work and sends
// the messages there (renamed, prepared for, or answered by pgswitch), and
// relays cancel requests, forwarding those whose key another peer gave out.
//
// It does not keep server connections (pool) nor judge server health
// (health); SQL classification lives in router/classify, and the record of
// session state per client and per server connection in router/track.
// The admin console and metrics read it through one snapshot (Inspect) and
// orchestrate its admin primitives (PauseDatabase, DisconnectDatabase…) in
// admin.
package router
