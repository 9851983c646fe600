package proxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/pprof"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pgswitch/pgswitch/edge/backend"
)

// Status is what /status answers: every listen and its servers.
type Status struct {
	Listens []ListenStatus `json:"listens"`
}

// ListenStatus is one listen's state.
type ListenStatus struct {
	Name    string           `json:"name"`
	Mode    string           `json:"mode"`
	Binds   []string         `json:"binds"`
	Queue   int              `json:"queue"`
	Servers []backend.Status `json:"servers"`
}

// Status returns the state of the configuration in force.
func (p *Proxy) Status() Status {
	addrs := p.Addrs()
	var st Status
	for _, pool := range p.pools() {
		gen := p.gen.Load()
		mode := ""
		if gen != nil && gen.listens[pool.Name] != nil {
			mode = string(gen.listens[pool.Name].cfg.Mode)
		}
		binds := addrs[pool.Name]
		slices.Sort(binds)
		st.Listens = append(st.Listens, ListenStatus{Name: pool.Name, Mode: mode, Binds: binds,
			Queue: pool.QueueLen(), Servers: pool.Status()})
	}
	return st
}

func (p *Proxy) adminHandler(profiles bool) http.Handler {
	mux := http.NewServeMux()
	if profiles {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(p.metrics.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(p.Status())
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		WriteTable(w, p.Status(), time.Now())
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// WriteTable prints st as an aligned table, one server a line.
func WriteTable(w interface{ Write([]byte) (int, error) }, st Status, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "LISTEN\tMODE\tSERVER\tADDR\tSTATE\tSINCE\tIN_FLIGHT\tMAXCONN\tQUEUE\tCHECKS\tFAILED\tSERVED\tLAST_ERROR")
	for _, l := range st.Listens {
		for _, s := range l.Servers {
			state := "UP"
			switch {
			case !s.Up:
				state = "DOWN"
			case !s.Checked:
				state = "no check"
			}
			if s.Backup {
				state += " (backup)"
			}
			maxconn := "-"
			if s.MaxConn > 0 {
				maxconn = fmt.Sprint(s.MaxConn)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%d\t%d\t%d\t%d\t%s\n", l.Name, l.Mode, s.Name, s.Addr, state,
				now.Sub(s.Since).Truncate(time.Second), s.InFlight, maxconn, l.Queue, s.Checks, s.Failures, s.Served, s.LastErr)
		}
	}
	tw.Flush()
}
