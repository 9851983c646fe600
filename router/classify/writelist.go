package classify

import "strings"

// builtinWrites are functions that change state, or only make sense on (or
// fail on anything but) the server that runs writes. Names are matched on the
// last name component, case-insensitively.
var builtinWrites = map[string]struct{}{
	"nextval": {}, "setval": {},
	// currval and lastval read session state that only the server which ran
	// nextval has: on a replica they fail or answer for another session.
	"currval": {}, "lastval": {},
	"set_config": {}, "pg_notify": {},
	"txid_current": {}, "txid_current_if_assigned": {},
	"pg_current_xact_id": {}, "pg_current_xact_id_if_assigned": {},
	// These fail, or act on the wrong server, on a hot standby.
	"pg_current_wal_lsn": {}, "pg_current_wal_insert_lsn": {}, "pg_current_wal_flush_lsn": {},
	"pg_switch_wal": {}, "pg_create_restore_point": {}, "pg_drop_replication_slot": {},
	"pg_replication_slot_advance": {}, "pg_logical_emit_message": {},
	"pg_promote": {}, "pg_reload_conf": {},
	"pg_terminate_backend": {}, "pg_cancel_backend": {},
	"dblink_exec": {}, "lowrite": {},
	// Maintenance that writes, and fails during recovery; also volatile in
	// pg_catalog (the catalog's list covers the rest once loaded).
	"brin_summarize_new_values": {}, "brin_summarize_range": {}, "brin_desummarize_range": {},
	"gin_clean_pending_list": {}, "setseed": {},
}

// builtinWritePrefixes cover families: lo_* large objects, every advisory lock
// and unlock, pg_stat_reset*.
var builtinWritePrefixes = [...]string{"lo_", "pg_advisory_", "pg_try_advisory_", "pg_stat_reset"}

// sessionAdvisory are the advisory lock functions whose locks outlive the
// transaction: a session that calls them must keep its server connection.
var sessionAdvisory = map[string]struct{}{
	"pg_advisory_lock": {}, "pg_advisory_lock_shared": {},
	"pg_try_advisory_lock": {}, "pg_try_advisory_lock_shared": {},
	"pg_advisory_unlock": {}, "pg_advisory_unlock_shared": {}, "pg_advisory_unlock_all": {},
}

// ReadSafeVolatile are the volatile built-in functions (pg_catalog) that a
// read may call and still run on a hot standby: they change nothing and
// answer there as well as on the primary. Every other volatile function, in
// pg_catalog or not, makes a query a write (the router loads them from the
// primary's pg_proc into Classifier.SetVolatile).
var ReadSafeVolatile = []string{
	// clocks, randomness, sleeping
	"clock_timestamp", "timeofday", "random", "random_normal", "gen_random_uuid",
	"pg_sleep", "pg_sleep_for", "pg_sleep_until",
	// the session's own query
	"current_query",
	// recovery state, which a replica answers for itself
	"pg_is_in_recovery", "pg_last_wal_receive_lsn", "pg_last_wal_replay_lsn", "pg_last_xact_replay_timestamp",
	"pg_is_wal_replay_paused", "pg_get_wal_replay_pause_state",
	// sizes of relations and databases
	"pg_relation_size", "pg_table_size", "pg_indexes_size", "pg_total_relation_size",
	"pg_database_size", "pg_tablespace_size",
	// catalog reads
	"pg_partition_tree", "pg_partition_ancestors", "pg_jit_available",
}

func isBuiltinWrite(name string) bool {
	if _, ok := builtinWrites[name]; ok {
		return true
	}
	for _, p := range builtinWritePrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	// pg_create_physical_replication_slot, pg_create_logical_replication_slot
	return strings.HasPrefix(name, "pg_create_") && strings.HasSuffix(name, "_replication_slot")
}

// nameSet builds a set of lower-cased last name components ("app.f" → "f").
func nameSet(names []string) map[string]struct{} {
	set := make(map[string]struct{}, len(names))
	for _, n := range names {
		n = strings.TrimSpace(n)
		if i := strings.LastIndexByte(n, '.'); i >= 0 {
			n = n[i+1:]
		}
		n = strings.Trim(n, `"`)
		if n != "" {
			set[strings.ToLower(n)] = struct{}{}
		}
	}
	return set
}
