package accesslog

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestAppend(t *testing.T) {
	at := time.Date(2000, 10, 10, 13, 55, 36, 0, time.FixedZone("", -7*3600))
	tests := []struct {
		name     string
		e        Entry
		combined bool
		want     string
	}{
		{"clf", Entry{Client: "127.0.0.1", Time: at, RequestLine: "GET /apache_pb.gif HTTP/1.0", Status: 200, Bytes: 2326},
			false, `127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326`},
		{"no body", Entry{Client: "::1", Time: at, RequestLine: "HEAD / HTTP/1.1", Status: 304},
			false, `::1 - - [10/Oct/2000:13:55:36 -0700] "HEAD / HTTP/1.1" 304 -`},
		{"bad request", Entry{Client: "10.0.0.1", Time: at, Status: 408},
			false, `10.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "-" 408 -`},
		{"combined", Entry{Client: "127.0.0.1", Time: at, RequestLine: "GET / HTTP/2.0", Status: 200, Bytes: 5,
			Referer: "http://a/", UserAgent: `curl "x"`},
			true, `127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/2.0" 200 5 "http://a/" "curl \"x\""`},
		{"parts", Entry{Client: "127.0.0.1", Time: at, Method: "GET", Target: "/a b\"", Proto: "HTTP/1.1", Status: 200, Bytes: 3},
			false, `127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET /a b\" HTTP/1.1" 200 3`},
		{"forged line", Entry{Client: "127.0.0.1", Time: at, RequestLine: "GET /\n127.0.0.2 é HTTP/1.1", Status: 400},
			false, `127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET /\x0a127.0.0.2 \xc3\xa9 HTTP/1.1" 400 -`},
	}
	for _, tt := range tests {
		got := string(Append(nil, &tt.e, tt.combined))
		if got != tt.want+"\n" {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, got, tt.want)
		}
	}
}

func TestFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	l, err := Open(path, "clf")
	if err != nil {
		t.Fatal(err)
	}
	l.Log(&Entry{Client: "127.0.0.1", Time: time.Now(), RequestLine: "GET / HTTP/1.1", Status: 200, Bytes: 1})
	l.Log(&Entry{Client: "127.0.0.1", Time: time.Now(), RequestLine: "GET /b HTTP/1.1", Status: 404, Bytes: 9})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 2 || !strings.HasSuffix(lines[1], `"GET /b HTTP/1.1" 404 9`) {
		t.Fatalf("file holds %q", data)
	}
	if off, err := Open("off", "clf"); off != nil || err != nil {
		t.Fatalf("off: got %v, %v", off, err)
	}
	var none *Logger
	none.Log(&Entry{}) // must not panic
}

// TestAppendAllocs: formatting a line into a buffer large enough allocates
// nothing.
func TestAppendAllocs(t *testing.T) {
	e := Entry{Client: "127.0.0.1", Time: time.Now(), Method: "GET", Target: "/index.html", Proto: "HTTP/1.1",
		Status: 200, Bytes: 512, Referer: "http://a/", UserAgent: "curl/8"}
	buf := make([]byte, 0, 512)
	if n := testing.AllocsPerRun(100, func() { buf = Append(buf[:0], &e, true) }); n != 0 {
		t.Fatalf("%v allocations per line, want 0", n)
	}
}

func BenchmarkAppend(b *testing.B) {
	e := Entry{Client: "127.0.0.1", Time: time.Now(), Method: "GET", Target: "/index.html?q=1", Proto: "HTTP/1.1",
		Status: 200, Bytes: 512, Referer: "http://a/", UserAgent: "Mozilla/5.0 (X11; Linux x86_64)"}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = Append(buf[:0], &e, true)
	}
}
