package wire

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// checkClientError asserts the invariant of every error a client can cause:
// a FATAL *Error with a 5-character SQLSTATE.
func checkClientError(t *testing.T, err error) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("got error %T %v, want *Error", err, err)
	}
	if len(e.Code) != 5 || e.Severity != SeverityFatal {
		t.Fatalf("got %s %q, want FATAL with a 5-character code", e.Severity, e.Code)
	}
}

// FuzzNegotiate feeds arbitrary first bytes to Negotiate. The client writes
// them and hangs up, so Negotiate must return long before its deadline.
func FuzzNegotiate(f *testing.F) {
	serverCfg, _ := selfSigned(f)
	f.Fuzz(func(t *testing.T, data []byte, useTLS bool) {
		var cfg *tls.Config
		if useTLS {
			cfg = serverCfg
		}
		client, server := net.Pipe()
		const deadline = 2 * time.Second
		server.SetDeadline(time.Now().Add(deadline))
		var wg sync.WaitGroup
		wg.Go(func() {
			_, _ = client.Write(data)
			client.Close()
		})
		wg.Go(func() { _, _ = io.Copy(io.Discard, client) })

		start := time.Now()
		conn, st, err := Negotiate(server, cfg)
		elapsed := time.Since(start)
		server.Close()
		wg.Wait()

		if elapsed > deadline+time.Second {
			t.Errorf("Negotiate took %v, want under its %v deadline", elapsed, deadline)
		}
		if conn == nil {
			t.Fatal("got a nil conn, want one to write errors on")
		}
		if err != nil {
			checkClientError(t, err)
			if st != nil {
				t.Errorf("got Startup %+v with error %v, want nil", st, err)
			}
			return
		}
		switch {
		case st == nil:
			t.Fatal("got nil Startup and no error")
		case (st.Params == nil) == (st.Cancel == nil):
			t.Fatalf("got Params %v and Cancel %v, want exactly one", st.Params, st.Cancel)
		case st.Params != nil && (st.Params["user"] == "" || st.Params["database"] == ""):
			t.Fatalf("got Params %v, want user and database set", st.Params)
		case st.TLS && !useTLS:
			t.Fatal("got TLS without a TLS config")
		}
	})
}

// FuzzParseHeader checks that ParseHeader never panics and only accepts
// lengths it can allocate.
func FuzzParseHeader(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte, max int) {
		h, err := ParseHeader(b, max)
		if err != nil {
			checkClientError(t, err)
			return
		}
		if h.Len < 0 || h.Len > max {
			t.Fatalf("got Len %d, want within [0, %d]", h.Len, max)
		}
		if want := int(binary.BigEndian.Uint32(b[1:5])) - 4; h.Type != b[0] || h.Len != want {
			t.Fatalf("got %q %d, want %q %d", h.Type, h.Len, b[0], want)
		}
	})
}

// fuzzSCRAMClient plays the client from fuzzed bytes, in memory. Its
// client-final-message gets the server's nonce wherever it says NONCE, so
// the fuzzer reaches past the nonce check.
type fuzzSCRAMClient struct {
	toServer bytes.Buffer
	final    []byte
	writes   int
}

func (c *fuzzSCRAMClient) Read(p []byte) (int, error) { return c.toServer.Read(p) }

func (c *fuzzSCRAMClient) Write(p []byte) (int, error) {
	c.writes++
	// The second message is AuthenticationSASLContinue: 'R', length, 11, data.
	if c.writes == 2 && len(p) > 9 && c.final != nil {
		nonce := attrOrEmpty(string(p[9:]), "r")
		msg := bytes.ReplaceAll(c.final, []byte("NONCE"), []byte(nonce))
		c.toServer.Write(frame('p', msg))
	}
	return len(p), nil
}

func frame(typ byte, body []byte) []byte {
	b := make([]byte, HeaderSize, HeaderSize+len(body))
	PutHeader(b, typ, len(body))
	return append(b, body...)
}

// FuzzSCRAMClientFirst runs AuthenticateSCRAM against whatever a client
// sends: a client-first-message (framed as SASLInitialResponse, or taken as
// raw bytes when raw is set) and a client-final-message.
func FuzzSCRAMClientFirst(f *testing.F) {
	secret := mustSecret(f, testVerifier(f, "pw", []byte("0123456789abcdef"), 4096), "u")
	f.Fuzz(func(t *testing.T, first, final []byte, raw bool) {
		c := &fuzzSCRAMClient{final: final}
		if raw {
			c.toServer.Write(first)
		} else {
			body := append([]byte("SCRAM-SHA-256\x00"), binary.BigEndian.AppendUint32(nil, uint32(len(first)))...)
			c.toServer.Write(frame('p', append(body, first...)))
		}
		if err := AuthenticateSCRAM(c, "u", secret); err != nil {
			checkClientError(t, err)
		}
	})
}

// FuzzErrorField: any ErrorResponse body a server may send is read without
// a panic, and a field found lies within the body.
func FuzzErrorField(f *testing.F) {
	f.Add([]byte("SERROR\x00C25006\x00Mno\x00\x00"), byte('C'))
	f.Add([]byte("C"), byte('C'))
	f.Fuzz(func(t *testing.T, body []byte, code byte) {
		if v := ErrorField(body, code); len(v) > len(body) {
			t.Fatalf("field of %d bytes from a body of %d", len(v), len(body))
		}
	})
}
