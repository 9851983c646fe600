package httpproxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// checkAnswer holds readAnswer to http.ReadResponse on in: where readAnswer
// takes an answer, http.ReadResponse reads the same status, fields, length,
// close and body; where it does not, it has consumed nothing.
func checkAnswer(t *testing.T, in []byte, method string) (taken bool) {
	t.Helper()
	req := &http.Request{Method: method}
	br := bufio.NewReaderSize(bytes.NewReader(in), 4096)
	br.Peek(1)
	got, n, ok := readAnswer(br, req)
	if !ok {
		rest, _ := io.ReadAll(br)
		if !bytes.Equal(rest, in) {
			t.Fatalf("left %q but consumed %d bytes of it", in, len(in)-len(rest))
		}
		return false
	}
	want, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(in)), req)
	if err != nil {
		t.Fatalf("readAnswer took %q, http.ReadResponse: %v", in, err)
	}
	if got.Status != want.Status || got.StatusCode != want.StatusCode || got.Proto != want.Proto ||
		got.ProtoMajor != want.ProtoMajor || got.ProtoMinor != want.ProtoMinor || got.ContentLength != want.ContentLength ||
		n != want.ContentLength || got.Close != want.Close || want.TransferEncoding != nil || want.Trailer != nil ||
		!reflect.DeepEqual(got.Header, want.Header) {
		t.Fatalf("%q:\nreadAnswer         %q %d %s %d close=%v %v\nhttp.ReadResponse  %q %d %s %d close=%v %v te=%v trailer=%v",
			in, got.Status, got.StatusCode, got.Proto, got.ContentLength, got.Close, got.Header,
			want.Status, want.StatusCode, want.Proto, want.ContentLength, want.Close, want.Header, want.TransferEncoding, want.Trailer)
	}
	b := &serverBody{remain: n, c: &serverConn{br: br}}
	gotBody, gotErr := io.ReadAll(readerFunc(b.read))
	wantBody, wantErr := io.ReadAll(want.Body)
	if !bytes.Equal(gotBody, wantBody) || (gotErr == nil) != (wantErr == nil) ||
		gotErr != nil && !errors.Is(gotErr, io.ErrUnexpectedEOF) {
		t.Fatalf("%q: body %q %v, http.ReadResponse %q %v", in, gotBody, gotErr, wantBody, wantErr)
	}
	return true
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

func TestReadAnswer(t *testing.T) {
	for _, tt := range []struct {
		name, in string
		method   string
		taken    bool
	}{
		{"bench", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 23\r\nDate: Sun, 06 Dec 2026 12:00:00 GMT\r\n\r\nhello from the backend\n", "GET", true},
		{"repeated and odd spacing", "HTTP/1.1 404 Not Found\r\nSet-Cookie: a=1\r\nset-cookie:b=2  \r\nX-Empty:\r\nContent-Length: 0\r\n\r\n", "GET", true},
		{"no reason", "HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok", "POST", true},
		{"keep-alive", "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok", "GET", true},
		{"close", "HTTP/1.1 200 OK\r\nConnection: Keep-Alive, close\r\nContent-Length: 2\r\n\r\nok", "GET", true},
		{"short body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok", "GET", true},
		{"obs-text", "HTTP/1.1 200 OK\r\nX-A: caf\xc3\xa9\r\nContent-Length: 0\r\n\r\n", "GET", true},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", "GET", false},
		{"until close", "HTTP/1.1 200 OK\r\n\r\nok", "GET", false},
		{"HTTP/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", "GET", false},
		{"HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", "HEAD", false},
		{"204", "HTTP/1.1 204 No Content\r\nContent-Length: 2\r\n\r\n", "GET", false},
		{"100", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "GET", false},
		{"two lengths", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok", "GET", false},
		{"bad length", "HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok", "GET", false},
		{"folded", "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n", "GET", false},
		{"bare LF", "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", "GET", false},
		{"space in name", "HTTP/1.1 200 OK\r\nX A: 1\r\nContent-Length: 0\r\n\r\n", "GET", false},
		{"control in value", "HTTP/1.1 200 OK\r\nX-A: a\x01\r\nContent-Length: 0\r\n\r\n", "GET", false},
		{"pragma", "HTTP/1.1 200 OK\r\nPragma: no-cache\r\nContent-Length: 0\r\n\r\n", "GET", false},
		{"incomplete head", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n", "GET", false},
		{"close and another Connection", "HTTP/1.1 200 OK\r\nConnection: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", "GET", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := checkAnswer(t, []byte(tt.in), tt.method); got != tt.taken {
				t.Fatalf("taken: %v, want %v", got, tt.taken)
			}
		})
	}
}

func FuzzReadAnswer(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 302 Found\r\nLocation: /x\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx",
		"HTTP/1.1 500 \r\ncontent-length:3\r\nx-a:\t v \t\r\n\r\nabc",
	} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, in []byte, head bool) {
		method := "GET"
		if head {
			method = "HEAD"
		}
		checkAnswer(t, in, method)
	})
}

// TestReadAnswerAllocs: the answer, its Header map and value slices, and
// the head as one string.
func TestReadAnswerAllocs(t *testing.T) {
	in := strings.NewReader("")
	head := "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 23\r\nDate: Sun, 06 Dec 2026 12:00:00 GMT\r\n\r\n"
	br := bufio.NewReaderSize(in, 4096)
	req := &http.Request{Method: "GET"}
	n := testing.AllocsPerRun(100, func() {
		in.Reset(head)
		br.Reset(in)
		br.Peek(1)
		if _, _, ok := readAnswer(br, req); !ok {
			t.Fatal("not taken")
		}
	})
	if n > 5 {
		t.Fatalf("%v allocations per answer head, want at most 5", n)
	}
}

// BenchmarkAnswerHead compares readAnswer with http.ReadResponse on the
// benchmark backend's answer head.
func BenchmarkAnswerHead(b *testing.B) {
	head := "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 23\r\nDate: Sun, 06 Dec 2026 12:00:00 GMT\r\n\r\n"
	req := &http.Request{Method: "GET"}
	in := strings.NewReader("")
	br := bufio.NewReaderSize(in, 4096)
	b.Run("readAnswer", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			in.Reset(head)
			br.Reset(in)
			br.Peek(1)
			readAnswer(br, req)
		}
	})
	b.Run("http.ReadResponse", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			in.Reset(head)
			br.Reset(in)
			http.ReadResponse(br, req)
		}
	})
}
