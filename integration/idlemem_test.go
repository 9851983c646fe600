package integration

import (
	"context"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgswitch/pgswitch/integration/testproxy"
)

// BenchmarkIdleClientMemory reports what one idle client costs pgswitch
// (in this process): heap and goroutine stack, after each client ran
// SELECT 1 once and the runtime collected its garbage.
//
//	go test -run '^$' -bench IdleClientMemory -benchtime 2000x ./integration/
func BenchmarkIdleClientMemory(b *testing.B) {
	db := cl.Database
	p := testproxy.Start(b, cl, proxyOptions{DBs: []string{db}, Primary: true, PoolSize: 4})
	ctx := context.Background()
	measure := func() (heap, stack uint64) {
		for range 3 {
			runtime.GC()
		}
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse, m.StackInuse
	}
	heap0, stack0 := measure()
	conns := make([]*pgconn.PgConn, 0, b.N)
	defer func() {
		for _, c := range conns {
			c.Close(ctx)
		}
	}()
	b.ResetTimer()
	for range b.N {
		c, err := pgconn.Connect(ctx, p.URL(db))
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Exec(ctx, "SELECT 1").Close(); err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
	}
	b.StopTimer()
	time.Sleep(3 * time.Second) // idle clients park after one to two seconds
	heap1, stack1 := measure()
	// The clients' own side (pgconn) is in this process too: count
	// pgswitch's by subtracting what the same clients cost when direct.
	if f := os.Getenv("IDLEMEM_HEAPPROFILE"); f != "" {
		out, _ := os.Create(f)
		pprof.WriteHeapProfile(out)
		out.Close()
	}
	b.ReportMetric(float64(heap1-heap0)/float64(b.N), "heap-B/client")
	b.ReportMetric(float64(stack1-stack0)/float64(b.N), "stack-B/client")
	b.ReportMetric(float64(p.R.Parked())/float64(b.N), "parked/client")
	b.ReportMetric(float64(runtime.NumGoroutine())/float64(b.N), "goroutines/client")
}
