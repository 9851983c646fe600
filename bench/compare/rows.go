package main

import (
	"fmt"
	"strconv"
	"strings"
)

// row is one workload of the table.
type row struct {
	key      string
	clients  int  // pgbench -c; 0 for the idle row
	idle     bool // RSS per idle client instead of pgbench
	prepared bool // -M prepared instead of -M simple
	write    bool // -N (simple-update without branch and teller updates) instead of -S
	haproxy  bool // HAProxy's TCP forwarding is a target too
}

var allRows = []row{
	{key: "S16", clients: 16},
	{key: "N16", clients: 16, write: true},
	{key: "S200", clients: 200},
	{key: "S1", clients: 1, haproxy: true},
	{key: "idle", idle: true},
	{key: "prepared", clients: 16, prepared: true},
}

func pickRows(list string) ([]row, error) {
	want := map[string]bool{}
	for _, k := range strings.Split(list, ",") {
		if k = strings.TrimSpace(k); k == "" {
			continue
		}
		found := false
		for _, r := range allRows {
			if strings.EqualFold(r.key, k) {
				want[r.key], found = true, true
			}
		}
		if !found {
			return nil, fmt.Errorf("-rows: unknown row %q (rows: %s)", k, rowKeys())
		}
	}
	var rows []row
	for _, r := range allRows {
		if want[r.key] {
			rows = append(rows, r)
		}
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("-rows: no row picked (rows: %s)", rowKeys())
	}
	return rows, nil
}

// title is the row's name in the table.
func (r row) title() string {
	switch {
	case r.idle:
		return fmt.Sprintf("%d idle clients, each ran `SELECT 1` once", *idleClients)
	case r.clients > *poolSize:
		return fmt.Sprintf("`%s -c %d`, pool of %d", r.script(), r.clients, *poolSize)
	default:
		return fmt.Sprintf("`%s -c %d`", r.script(), r.clients)
	}
}

func (r row) script() string {
	switch {
	case r.write:
		return "-N"
	case r.prepared:
		return "-S -M prepared"
	default:
		return "-S"
	}
}

// pgbenchArgs are the run's arguments besides the log options.
func (r row) pgbenchArgs() []string {
	mode := "simple"
	if r.prepared {
		mode = "prepared"
	}
	script := "-S"
	if r.write {
		script = "-N"
	}
	j := min(*threads, r.clients)
	return []string{"-n", script, "-M", mode, "-c", strconv.Itoa(r.clients), "-j", strconv.Itoa(j),
		"-T", strconv.Itoa(*duration)}
}

// runsOn says whether the row runs on t, and if not, why (empty when the
// target simply has no place in the row, as direct in the idle row).
func (r row) runsOn(t *target) (ok bool, why string) {
	switch {
	case t.kind == haproxy:
		return r.haproxy, ""
	case r.idle && t.kind == direct:
		return false, ""
	case r.prepared && t.kind == pgbouncer && !t.prepared:
		return false, t.version + " keeps no prepared statements in transaction pooling (max_prepared_statements came in 1.21), so `pgbench -M prepared` fails through it"
	}
	return true, ""
}
