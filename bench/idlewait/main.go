// Command idlewait holds idle client connections to a pgswitch and reports
// its RSS over time, to tell steady-state memory from login garbage that the
// Go runtime collects later (it forces a GC every two minutes when idle).
//
//	go run ./bench/idlewait -url "$DATABASE_URL" -pid $(pgrep -f 'pgswitch demo') -n 1000
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

func main() {
	url := flag.String("url", "", "connection URL through pgswitch")
	pid := flag.Int("pid", 0, "pgswitch's process id")
	n := flag.Int("n", 1000, "idle connections")
	wait := flag.Duration("wait", 150*time.Second, "how long to keep them open")
	flag.Parse()
	ctx := context.Background()
	var conns []*pgconn.PgConn
	for i := 0; i < *n; i++ {
		c, err := pgconn.Connect(ctx, *url)
		if err != nil {
			fmt.Fprintln(os.Stderr, "connect:", err)
			os.Exit(1)
		}
		conns = append(conns, c)
	}
	start := time.Now()
	for time.Since(start) < *wait {
		fmt.Printf("%4.0fs  RSS %s\n", time.Since(start).Seconds(), rss(*pid))
		time.Sleep(15 * time.Second)
	}
	fmt.Printf("%4.0fs  RSS %s\n", time.Since(start).Seconds(), rss(*pid))
	for _, c := range conns {
		c.Close(ctx)
	}
}

func rss(pid int) string {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}
