// Package router owns client sessions: it accepts and logs in clients, reads
// their messages, picks a server for each unit of work and forwards the
// messages there, and relays cancel requests.
//
// It does not keep server connections (pool) nor judge server health (health);
// SQL classification lives in router/classify.
package router
