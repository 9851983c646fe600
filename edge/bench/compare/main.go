// Command compare measures pgswitch-edge side by side with HAProxy in one
// interleaved run, against the same loopback backend: requests/s, p50/p99
// latency and proxy CPU per request for HTTP/1.1 keep-alive, HTTPS
// keep-alive, HTTPS with a new TLS connection per request, and HTTP/2; then
// the resident memory per idle keep-alive client connection.
//
//	go run ./bench/compare -duration 10s -rounds 3
//
// It needs haproxy, wrk and h2load (Debian: haproxy, wrk, nghttp2-client).
// Both proxies log nothing (HAProxy has no log target; pgswitch-edge runs
// with access_log off) and check their server every 2s. CPU is utime+stime
// from /proc/PID/stat before and after each run.
//
// Rejected: timing the load tool's whole run (it includes its own start);
// measuring with the backend in the benchmark's process (its CPU would
// compete in the same scheduler as the proxies' readings are taken from):
// the backend runs as a child process of this program.
package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/net/http2"
)

var (
	duration = flag.Duration("duration", 10*time.Second, "length of each measured run")
	rounds   = flag.Int("rounds", 3, "interleaved rounds; the median is reported")
	conns    = flag.Int("conns", 50, "concurrent client connections")
	idle     = flag.Int("idle", 2000, "idle keep-alive connections for the memory measurement")
	backend  = flag.String("serve-backend", "", "internal: serve the backend on this address")
	only     = flag.String("only", "", "run only the scenarios whose name contains this")
	idleTLS  = flag.Bool("idle-tls", false, "measure idle connections on the TLS bind (HTTP/1.1 by ALPN) instead of the plain one")
	idleH2   = flag.Bool("idle-h2", false, "measure idle HTTP/2 connections (h2 by ALPN on the TLS bind) instead")
	leanH2   = flag.Bool("lean-http2", true, "serve HTTP/2 with pgswitch-edge's lean loop (lean_http2, the default); false: net/http's server")
)

func main() {
	flag.Parse()
	if *backend != "" {
		serveBackend(*backend)
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
}

// serveBackend is the application both proxies forward to: a small
// answer, keep-alive.
func serveBackend(addr string) {
	body := []byte("hello from the backend\n")
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	})
	if err := (&http.Server{Addr: addr, Handler: h}).ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, "backend:", err)
		os.Exit(1)
	}
}

// proxy is one proxy under test.
type proxy struct {
	name             string
	cmd              *exec.Cmd
	plain, tls, full string // addresses; full: TLS without resumption
}

func (p *proxy) pid() int { return p.cmd.Process.Pid }

func run() error {
	for _, tool := range []string{"haproxy", "wrk", "h2load"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is not installed (apt-get install haproxy wrk nghttp2-client)", tool)
		}
	}
	dir, err := os.MkdirTemp("", "edge-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	edgeBin := filepath.Join(dir, "pgswitch-edge")
	build := exec.Command("go", "build", "-o", edgeBin, "./cmd/pgswitch-edge")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build pgswitch-edge (run from edge/): %w", err)
	}
	if err := writeCert(dir); err != nil {
		return err
	}

	ports, err := freePorts(8)
	if err != nil {
		return err
	}
	backendAddr := ports[0]
	self, err := os.Executable()
	if err != nil {
		return err
	}
	be := exec.Command(self, "-serve-backend", backendAddr)
	be.Stderr = os.Stderr
	if err := be.Start(); err != nil {
		return err
	}
	defer stop(be)

	edge := &proxy{name: "pgswitch-edge", plain: ports[1], tls: ports[2], full: ports[6]}
	hap := &proxy{name: "haproxy", plain: ports[4], tls: ports[5], full: ports[7]}
	edgeCfg := filepath.Join(dir, "edge.yaml")
	os.WriteFile(edgeCfg, []byte(fmt.Sprintf(`
admin: {listen: %q, pprof: true}
access_log: {path: "off"}
log: {level: warn}
defaults:
  timeouts: {connect: 5s, client: 60s, server: 60s, http_request: 60s, http_keep_alive: 60s}
  check: {inter: 2s}
listens:
  bench:
    binds:
      - %q
      - addr: %q
        tls: {cert_dir: %[4]q, alpn: [h2, http/1.1]}
      - addr: %[6]q
        tls: {cert_dir: %[4]q, alpn: [h2, http/1.1], session_tickets: false}
    lean_http2: %[7]v
    servers: [{name: be, addr: %[5]q}]
`, ports[3], edge.plain, edge.tls, filepath.Join(dir, "certs"), backendAddr, edge.full, *leanH2)), 0o600)
	hapCfg := filepath.Join(dir, "haproxy.cfg")
	os.WriteFile(hapCfg, []byte(fmt.Sprintf(`
global
    maxconn 9000
    # No TLS session cache: with no-tls-tickets below, the full-handshake
    # bind then resumes nothing (tickets on the other bind are stateless).
    tune.ssl.cachesize 0
defaults
    mode http
    option forwardfor
    option httpchk GET /health
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-request 60s
    timeout http-keep-alive 60s
frontend bench
    bind %s
    bind %s ssl crt %[3]s alpn h2,http/1.1
    bind %[5]s ssl crt %[3]s alpn h2,http/1.1 no-tls-tickets
    default_backend be
backend be
    server be %[4]s check inter 2s
`, hap.plain, hap.tls, filepath.Join(dir, "certs", "bench.pem"), backendAddr, hap.full)), 0o600)

	edge.cmd = exec.Command(edgeBin, "serve", "--config", edgeCfg)
	edge.cmd.Stderr = os.Stderr
	hap.cmd = exec.Command("haproxy", "-db", "-f", hapCfg)
	hap.cmd.Stderr = os.Stderr
	for _, p := range []*proxy{edge, hap} {
		if err := p.cmd.Start(); err != nil {
			return fmt.Errorf("start %s: %w", p.name, err)
		}
		defer stop(p.cmd)
		if err := waitHTTP("http://" + p.plain + "/"); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
	}
	fmt.Printf("pgswitch-edge pid %d, haproxy pid %d, backend pid %d; GOMAXPROCS default, %d CPUs\n",
		edge.pid(), hap.pid(), be.Process.Pid, numCPU())

	kind := "plain HTTP/1.1"
	if *idleTLS {
		kind = "HTTPS, HTTP/1.1 by ALPN"
	}
	if *idleH2 {
		kind = "HTTP/2, h2 by ALPN"
	}
	fmt.Printf("\nIdle keep-alive connections (%d, %s, one request each, then idle), measured first on the fresh processes:\n\n", *idle, kind)
	fmt.Println("| proxy | VmRSS before | VmRSS with idle connections | per connection |")
	fmt.Println("|---|---:|---:|---:|")
	var goBefore, goWith map[string]float64
	for _, p := range []*proxy{edge, hap} {
		sample := func() {}
		if p == edge {
			goBefore = goMemory(ports[3])
			sample = func() { goWith = goMemory(ports[3]) }
		}
		before, with, err := idleRSS(p, *idle, sample)
		if err != nil {
			return fmt.Errorf("idle connections via %s: %w", p.name, err)
		}
		fmt.Printf("| %s | %d KiB | %d KiB | %.2f KiB |\n", p.name, before, with, float64(with-before)/float64(*idle))
	}
	fmt.Printf("\npgswitch-edge's Go memory per idle connection (its /metrics, same moment): ")
	for i, m := range []struct{ name, key string }{
		{"goroutine stacks", "go_memstats_stack_inuse_bytes"}, {"heap in use", "go_memstats_heap_inuse_bytes"},
		{"goroutines", "go_goroutines"},
	} {
		if i > 0 {
			fmt.Print(", ")
		}
		d := (goWith[m.key] - goBefore[m.key]) / float64(*idle)
		if m.key == "go_goroutines" {
			fmt.Printf("%s %.2f", m.name, d)
		} else {
			fmt.Printf("%s %.2f KiB", m.name, d/1024)
		}
	}
	fmt.Println()

	type scenario struct {
		name string
		run  func(p *proxy) (result, error)
	}
	d := *duration
	c := strconv.Itoa(*conns)
	secs := strconv.Itoa(int(d.Seconds()))
	scenarios := []scenario{
		{"HTTP/1.1 keep-alive", func(p *proxy) (result, error) {
			return runWrk("-t2", "-c"+c, "-d"+secs+"s", "--latency", "http://"+p.plain+"/")
		}},
		{"HTTPS keep-alive", func(p *proxy) (result, error) {
			return runWrk("-t2", "-c"+c, "-d"+secs+"s", "--latency", "https://"+p.tls+"/")
		}},
		{"HTTPS new TLS connection per request (resumed)", func(p *proxy) (result, error) {
			return runWrk("-t2", "-c"+c, "-d"+secs+"s", "--latency", "-H", "Connection: close", "https://"+p.tls+"/")
		}},
		{"HTTPS new TLS connection per request (full handshake)", func(p *proxy) (result, error) {
			return runWrk("-t2", "-c"+c, "-d"+secs+"s", "--latency", "-H", "Connection: close", "https://"+p.full+"/")
		}},
		{"HTTP/2 (h2 by ALPN, 10 streams per connection)", func(p *proxy) (result, error) {
			return runH2load(dir, "-D", secs, "-c", c, "-m", "10", "-t", "2", "https://"+p.tls+"/")
		}},
	}
	results := map[string]map[string][]measured{}
	for r := range *rounds {
		for _, s := range scenarios {
			if *only != "" && !strings.Contains(s.name, *only) {
				continue
			}
			order := []*proxy{edge, hap}
			if r%2 == 1 {
				order = []*proxy{hap, edge}
			}
			for _, p := range order {
				before, err := cpuTicks(p.pid())
				if err != nil {
					return err
				}
				res, err := s.run(p)
				if err != nil {
					return fmt.Errorf("%s via %s: %w", s.name, p.name, err)
				}
				after, err := cpuTicks(p.pid())
				if err != nil {
					return err
				}
				m := measured{result: res, cpu: float64(after-before) / 100}
				if results[s.name] == nil {
					results[s.name] = map[string][]measured{}
				}
				results[s.name][p.name] = append(results[s.name][p.name], m)
				fmt.Printf("round %d %-54s %-14s %9.0f req/s  p50 %7.3fms  p99 %7.3fms  %6.1f µs CPU/req  (%d requests, %.2fs CPU)\n",
					r+1, s.name, p.name, res.rps, ms(res.p50), ms(res.p99), m.cpuPerReq()*1e6, res.requests, m.cpu)
			}
		}
	}

	fmt.Printf("\nMedians of %d interleaved rounds of %v, %d connections:\n\n", *rounds, d, *conns)
	fmt.Println("| scenario | proxy | req/s | p50 | p99 | CPU µs/req | req per CPU-second | edge ÷ HAProxy (req per CPU-s) |")
	fmt.Println("|---|---|---:|---:|---:|---:|---:|---:|")
	for _, s := range scenarios {
		if results[s.name] == nil {
			continue
		}
		e, h := median(results[s.name][edge.name]), median(results[s.name][hap.name])
		for _, row := range []struct {
			name string
			m    measured
		}{{edge.name, e}, {hap.name, h}} {
			ratio := ""
			if row.name == edge.name {
				ratio = fmt.Sprintf("%.2f×", e.perCPUSecond()/h.perCPUSecond())
			}
			fmt.Printf("| %s | %s | %.0f | %.3f ms | %.3f ms | %.1f | %.0f | %s |\n", s.name, row.name, row.m.rps,
				ms(row.m.p50), ms(row.m.p99), row.m.cpuPerReq()*1e6, row.m.perCPUSecond(), ratio)
		}
	}

	return nil
}

// result is what a load tool reported.
type result struct {
	rps      float64
	requests int64
	p50, p99 time.Duration
}

type measured struct {
	result
	cpu float64 // proxy CPU seconds during the run
}

func (m measured) cpuPerReq() float64    { return m.cpu / float64(m.requests) }
func (m measured) perCPUSecond() float64 { return float64(m.requests) / m.cpu }

// median returns the run with the median requests per CPU-second.
func median(ms []measured) measured {
	s := slices.Clone(ms)
	slices.SortFunc(s, func(a, b measured) int {
		switch {
		case a.perCPUSecond() < b.perCPUSecond():
			return -1
		case a.perCPUSecond() > b.perCPUSecond():
			return 1
		}
		return 0
	})
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

var (
	wrkLatency  = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$`)
	wrkRequests = regexp.MustCompile(`(?m)^\s+(\d+) requests in`)
	wrkRPS      = regexp.MustCompile(`(?m)^Requests/sec:\s+([\d.]+)`)
	wrkErrors   = regexp.MustCompile(`(?m)^\s+Non-2xx or 3xx responses: (\d+)|Socket errors: .*`)
)

func runWrk(args ...string) (result, error) {
	out, err := exec.Command("wrk", args...).CombinedOutput()
	if err != nil {
		return result{}, fmt.Errorf("wrk: %w\n%s", err, out)
	}
	s := string(out)
	var r result
	if m := wrkRequests.FindStringSubmatch(s); m != nil {
		r.requests, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := wrkRPS.FindStringSubmatch(s); m != nil {
		r.rps, _ = strconv.ParseFloat(m[1], 64)
	}
	for _, m := range wrkLatency.FindAllStringSubmatch(s, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[m[3]]
		d := time.Duration(v * float64(unit))
		if m[1] == "50" {
			r.p50 = d
		} else {
			r.p99 = d
		}
	}
	if r.requests == 0 || r.rps == 0 || r.p99 == 0 {
		return r, fmt.Errorf("unexpected wrk output:\n%s", s)
	}
	if m := wrkErrors.FindString(s); m != "" {
		fmt.Fprintf(os.Stderr, "wrk %v: %s\n", args, strings.TrimSpace(m))
	}
	return r, nil
}

var (
	h2Finished = regexp.MustCompile(`finished in ([\d.]+)s, ([\d.]+) req/s`)
	h2Requests = regexp.MustCompile(`requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded`)
)

// runH2load runs h2load and takes the latency percentiles from its
// per-request log (its summary has only mean and deviation).
func runH2load(dir string, args ...string) (result, error) {
	logPath := filepath.Join(dir, "h2load.log")
	os.Remove(logPath)
	out, err := exec.Command("h2load", append([]string{"--log-file=" + logPath}, args...)...).CombinedOutput()
	if err != nil {
		return result{}, fmt.Errorf("h2load: %w\n%s", err, out)
	}
	s := string(out)
	var r result
	if m := h2Finished.FindStringSubmatch(s); m != nil {
		r.rps, _ = strconv.ParseFloat(m[2], 64)
	}
	if m := h2Requests.FindStringSubmatch(s); m != nil {
		r.requests, _ = strconv.ParseInt(m[1], 10, 64)
	}
	f, err := os.Open(logPath)
	if err != nil {
		return r, err
	}
	defer f.Close()
	var lat []time.Duration
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 || fields[1] != "200" {
			continue
		}
		us, _ := strconv.ParseInt(fields[2], 10, 64)
		lat = append(lat, time.Duration(us)*time.Microsecond)
	}
	if len(lat) == 0 || r.requests == 0 {
		return r, fmt.Errorf("unexpected h2load output:\n%s", s)
	}
	slices.Sort(lat)
	r.p50, r.p99 = lat[len(lat)/2], lat[len(lat)*99/100]
	if !strings.Contains(s, "Application protocol: h2") {
		return r, fmt.Errorf("h2load did not negotiate h2:\n%s", s)
	}
	return r, nil
}

// cpuTicks is utime+stime of a process, in clock ticks (1/100 s).
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses.
	rest := string(b[strings.LastIndexByte(string(b), ')')+2:])
	f := strings.Fields(rest)
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return utime + stime, nil
}

func rssKiB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS for %d", pid)
}

// idleRSS opens n keep-alive connections to the proxy's plain bind (TLS
// bind with -idle-tls, HTTP/2 on it with -idle-h2), sends one request on each, reads the answer, and
// reads VmRSS once they idle (calling sample then too).
func idleRSS(p *proxy, n int, sample func()) (before, with int64, err error) {
	if before, err = rssKiB(p.pid()); err != nil {
		return
	}
	req := []byte("GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
	var cs []net.Conn
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	buf := make([]byte, 4096)
	h2 := &http2.Transport{}
	for range n {
		if *idleH2 {
			c, err := tls.Dial("tcp", p.tls, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
			if err != nil {
				return 0, 0, err
			}
			cs = append(cs, c)
			cc, err := h2.NewClientConn(c)
			if err != nil {
				return 0, 0, err
			}
			r, _ := http.NewRequest("GET", "https://"+p.tls+"/", nil)
			resp, err := cc.RoundTrip(r)
			if err != nil {
				return 0, 0, err
			}
			io.CopyBuffer(io.Discard, resp.Body, buf)
			resp.Body.Close()
			continue
		}
		var c net.Conn
		if *idleTLS {
			c, err = tls.Dial("tcp", p.tls, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		} else {
			c, err = net.Dial("tcp", p.plain)
		}
		if err != nil {
			return 0, 0, err
		}
		cs = append(cs, c)
		if _, err := c.Write(req); err != nil {
			return 0, 0, err
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return 0, 0, err
		}
		io.CopyBuffer(io.Discard, resp.Body, buf)
		resp.Body.Close()
	}
	time.Sleep(3 * time.Second)
	sample()
	with, err = rssKiB(p.pid())
	return before, with, err
}

// goMemory reads the Go runtime's gauges from pgswitch-edge's /metrics on
// its admin address.
func goMemory(admin string) map[string]float64 {
	out := map[string]float64{}
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && (strings.HasPrefix(f[0], "go_memstats_") || f[0] == "go_goroutines") {
			out[f[0]], _ = strconv.ParseFloat(f[1], 64)
		}
	}
	return out
}

func freePorts(n int) ([]string, error) {
	var out []string
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		out = append(out, l.Addr().String())
	}
	for _, l := range ls {
		l.Close()
	}
	return out, nil
}

func waitHTTP(url string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s never answered 200: %v", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func stop(c *exec.Cmd) {
	if c.Process == nil {
		return
	}
	c.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { c.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		c.Process.Kill()
		<-done
	}
}

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "processor\t:")
}

// writeCert makes a CA-less self-signed ECDSA P-256 certificate for both
// proxies: dir/certs/bench.pem (certificate then key).
func writeCert(dir string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench.test"},
		DNSNames: []string{"bench.test", "localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "certs"), 0o700); err != nil {
		return err
	}
	data := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})...)
	return os.WriteFile(filepath.Join(dir, "certs", "bench.pem"), data, 0o600)
}
