package integration

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
)

// TestLoginFlood: while clients that know no password run SCRAM logins as
// fast as they can, with one login computing at a time
// (limits.max_concurrent_auth: 1), a client already in is served, a client
// with the right password gets in, and every login of the flood ends in
// 28P01.
func TestLoginFlood(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	p := startProxy(t, proxyOptions{DBs: []string{db}, Primary: true, YAML: "limits:\n  max_concurrent_auth: 1\n"})
	ctx := testCtx(t)
	in := p.Connect(t, db, pgx.QueryExecModeSimpleProtocol)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var refused atomic.Int64
	errs := make(chan error, 8)
	for i := range 8 {
		user := cl.User
		if i%2 == 1 {
			user = fmt.Sprintf("nobody_%d", i) // refused as a wrong password
		}
		wg.Go(func() {
			for n := 0; n < 5000; n++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := failedSCRAMLogin(p.Addr, user, db); err != nil {
					errs <- err
					return
				}
				refused.Add(1)
			}
		})
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()
	eventually(t, time.Minute, "the flood to be under way", func() error {
		if n := refused.Load(); n < 100 {
			return fmt.Errorf("%d logins refused so far", n)
		}
		return nil
	})

	for i := range 50 {
		var n int
		if err := in.QueryRow(ctx, "SELECT $1::int", i).Scan(&n); err != nil || n != i {
			t.Fatalf("query %d of the client already in, during the flood: %d, %v", i, n, err)
		}
	}
	c, err := pgx.Connect(ctx, p.URL(db))
	if err != nil {
		t.Fatalf("login with the right password during the flood: %v", err)
	}
	c.Close(ctx)
	before := refused.Load()
	eventually(t, time.Minute, "the flood to go on", func() error {
		if refused.Load() == before {
			return errors.New("no login refused since")
		}
		return nil
	})
	select {
	case err := <-errs:
		t.Fatalf("a login of the flood: %v", err)
	default:
	}
	t.Logf("%d logins refused during the test", refused.Load())
}

// failedSCRAMLogin runs a SCRAM login with a zero proof, which costs the
// client nothing, and checks that it ends in FATAL 28P01.
func failedSCRAMLogin(addr, user, db string) error {
	nc, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		return err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(time.Minute))
	f := pgproto3.NewFrontend(nc, nc)
	f.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": user, "database": db}})
	if err := f.Flush(); err != nil {
		return err
	}
	if m, err := f.Receive(); err != nil {
		return err
	} else if _, ok := m.(*pgproto3.AuthenticationSASL); !ok {
		return fmt.Errorf("got %T, want AuthenticationSASL", m)
	}
	f.Send(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("n,,n=,r=flood")})
	if err := f.Flush(); err != nil {
		return err
	}
	m, err := f.Receive()
	if err != nil {
		return err
	}
	cont, ok := m.(*pgproto3.AuthenticationSASLContinue)
	if !ok {
		return fmt.Errorf("got %T, want AuthenticationSASLContinue", m)
	}
	nonce, _, _ := strings.Cut(strings.TrimPrefix(string(cont.Data), "r="), ",")
	proof := base64.StdEncoding.EncodeToString(make([]byte, 32))
	f.Send(&pgproto3.SASLResponse{Data: []byte("c=biws,r=" + nonce + ",p=" + proof)})
	if err := f.Flush(); err != nil {
		return err
	}
	if m, err = f.Receive(); err != nil {
		return err
	}
	if e, ok := m.(*pgproto3.ErrorResponse); !ok || e.Code != "28P01" || e.Severity != "FATAL" {
		return fmt.Errorf("got %#v, want FATAL 28P01", m)
	}
	return nil
}
