package pool

import (
	"net"
	"strconv"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// fakeServer is a scripted PostgreSQL server at the protocol boundary: it
// logs every client in with trust auth and then runs script on the connection.
type fakeServer struct {
	ln     net.Listener
	script func(b *pgproto3.Backend, nc net.Conn)
	wg     sync.WaitGroup

	mu      sync.Mutex
	conns   []net.Conn
	pid     uint32
	cancels []pgproto3.CancelRequest // received, in order
}

func newFakeServer(t testing.TB, script func(b *pgproto3.Backend, nc net.Conn)) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{ln: ln, script: script}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(s.close)
	return s
}

func (s *fakeServer) accept() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns = append(s.conns, nc)
		s.pid++
		pid := s.pid
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer nc.Close()
			b := pgproto3.NewBackend(nc, nc)
			m, err := b.ReceiveStartupMessage()
			if err != nil {
				return
			}
			if cr, ok := m.(*pgproto3.CancelRequest); ok {
				// Closing the connection confirms it, as PostgreSQL does.
				s.mu.Lock()
				s.cancels = append(s.cancels, *cr)
				s.mu.Unlock()
				return
			}
			b.Send(&pgproto3.AuthenticationOk{})
			b.Send(&pgproto3.ParameterStatus{Name: "server_version", Value: "15.0"})
			b.Send(&pgproto3.ParameterStatus{Name: "client_encoding", Value: "UTF8"})
			b.Send(&pgproto3.BackendKeyData{ProcessID: pid, SecretKey: []byte{0, 0, 0, 7}})
			b.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
			if err := b.Flush(); err != nil {
				return
			}
			s.script(b, nc)
		}()
	}
}

func (s *fakeServer) connCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// dropAll closes every server-side connection, as a crashed server would.
func (s *fakeServer) dropAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
}

func (s *fakeServer) close() {
	s.ln.Close()
	s.dropAll()
	s.wg.Wait()
}

func (s *fakeServer) target() Target {
	host, port, _ := net.SplitHostPort(s.ln.Addr().String())
	p, _ := strconv.Atoi(port)
	return Target{Host: host, Port: p, Database: "db", User: "u", Password: "pw"}
}

// echoScript answers every Query with one row holding the query text and a
// ReadyForQuery whose status follows BEGIN/COMMIT/ROLLBACK, and every Sync
// with ReadyForQuery.
func echoScript(b *pgproto3.Backend, _ net.Conn) {
	status := byte('I')
	for {
		m, err := b.Receive()
		if err != nil {
			return
		}
		switch m := m.(type) {
		case *pgproto3.Query:
			switch m.String {
			case "BEGIN":
				status = 'T'
			case "COMMIT", "ROLLBACK", "DISCARD ALL":
				if m.String != "DISCARD ALL" {
					status = 'I'
				}
			}
			b.Send(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("q"), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}}})
			b.Send(&pgproto3.DataRow{Values: [][]byte{[]byte(m.String)}})
			b.Send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
			b.Send(&pgproto3.ReadyForQuery{TxStatus: status})
		case *pgproto3.Sync:
			b.Send(&pgproto3.ReadyForQuery{TxStatus: status})
		case *pgproto3.Terminate:
			return
		}
		if err := b.Flush(); err != nil {
			return
		}
	}
}
