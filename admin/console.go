package admin

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgswitch/pgswitch/config"
	"github.com/pgswitch/pgswitch/router"
	"github.com/pgswitch/pgswitch/wire"
)

// Options are what the console needs beyond the router.
type Options struct {
	// Version is pgswitch's version, for SHOW VERSION.
	Version string
	// Load reads the configuration again for RELOAD; nil: RELOAD fails.
	Load func() (*config.Config, error)
	// Reloaded, if not nil, applies what the router does not own (workers)
	// after RELOAD applied a configuration.
	Reloaded func(*config.Config)
	// Shutdown starts pgswitch's shutdown for SHUTDOWN; it must not wait
	// for it. Nil: SHUTDOWN fails.
	Shutdown func()
	// Upgrade starts a binary upgrade for UPGRADE: it returns the new
	// process's PID once that serves the listeners and this process
	// accepts no more, or an error and this process goes on as before.
	// Nil: UPGRADE fails.
	Upgrade func() (newPID int, err error)
	// Predecessor is the PID of the process this one took the listeners
	// from in an upgrade, for SHOW PROCESS; 0 if it was started anew.
	Predecessor int
	Log         *slog.Logger
}

// Console serves the admin console of one router.
type Console struct {
	r       *router.Router
	opts    Options
	pauseMu sync.Mutex // one PAUSE, RESUME or KILL at a time
}

// New returns the console of r; install it with r.SetAdmin.
func New(r *router.Router, opts Options) *Console {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	return &Console{r: r, opts: opts}
}

// maxAdminMessage bounds one message from an admin client.
const maxAdminMessage = 1 << 20

// ServeAdmin runs the command loop of one admin client: simple Query
// messages only, as PgBouncer's console. Malformed messages are answered
// as PostgreSQL answers them: a Query whose text is not one terminated
// string gets ERROR 08P01 and the console goes on; an unknown message type
// or a bad length is FATAL 08P01.
func (con *Console) ServeAdmin(c *router.AdminClient) {
	in := bufio.NewReaderSize(c.Conn, 4096)
	be := pgproto3.NewBackend(in, c.Conn) // for sending; messages are read below
	skipping := false                     // after an extended-protocol message, until Sync
	for {
		typ, body, err := readMessage(in)
		if err != nil {
			var e *wire.Error
			if errors.As(err, &e) {
				be.Send(e.Response())
				be.Flush()
				con.opts.Log.Info("admin client sent a malformed message", "user", c.User, "err", e.Message)
			} else if letGo(c) {
				be.Send(router.ErrRetired.Response())
				be.Flush()
			} else if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && c.Ctx.Err() == nil {
				con.opts.Log.Debug("admin client read failed", "user", c.User, "err", err)
			}
			return
		}
		switch typ {
		case 'X':
			return
		case 'Q':
			if sql, e := queryText(body); e != nil {
				be.Send(e.Response())
			} else {
				con.run(be, c, sql)
			}
			be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		case 'S':
			if skipping {
				skipping = false
				be.Send(wire.Errorf(wire.CodeFeatureNotSupported, "the admin console supports only the simple query protocol").Response())
			}
			be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		case 'P', 'B', 'D', 'E', 'C', 'H':
			skipping = true
			continue
		case 'd', 'c', 'f':
			continue // COPY messages outside COPY: ignored, as PostgreSQL does
		default: // 'F': function calls
			be.Send(wire.Fatalf(wire.CodeProtocolViolation, "unexpected message type %q on the admin console", typ).Response())
			be.Flush()
			return
		}
		if err := be.Flush(); err != nil {
			return
		}
	}
}

// letGo reports whether the router lets c go: its process has handed its
// listeners over and has no other client left.
func letGo(c *router.AdminClient) bool {
	select {
	case <-c.LetGo:
		return true
	default:
		return false
	}
}

// readMessage reads one client message. A message type no client may send,
// or a length out of bounds, is a FATAL *wire.Error (08P01); read errors
// are returned as they are.
func readMessage(in *bufio.Reader) (typ byte, body []byte, err error) {
	var hdr [wire.HeaderSize]byte
	if _, err := io.ReadFull(in, hdr[:]); err != nil {
		return 0, nil, err
	}
	switch hdr[0] {
	case 'Q', 'P', 'B', 'D', 'E', 'C', 'S', 'H', 'X', 'F', 'd', 'c', 'f':
	default:
		return 0, nil, wire.Fatalf(wire.CodeProtocolViolation, "invalid frontend message type %d", hdr[0])
	}
	h, err := wire.ParseHeader(hdr[:], maxAdminMessage)
	if err != nil {
		return 0, nil, err
	}
	body = make([]byte, h.Len)
	if _, err := io.ReadFull(in, body); err != nil {
		return 0, nil, err
	}
	return h.Type, body, nil
}

// queryText returns the text of a Query message body, or PostgreSQL's
// ERROR when it is not one NUL-terminated string.
func queryText(body []byte) (string, *wire.Error) {
	i := bytes.IndexByte(body, 0)
	if i < 0 {
		return "", wire.Errorf(wire.CodeProtocolViolation, "invalid string in message")
	}
	if i != len(body)-1 {
		return "", wire.Errorf(wire.CodeProtocolViolation, "invalid message format")
	}
	return string(body[:i]), nil
}

// run executes one Query's text and queues its answer (without ReadyForQuery).
func (con *Console) run(be *pgproto3.Backend, c *router.AdminClient, sql string) {
	cmd, err := parse(sql)
	if err == nil && cmd.spec.role == adminRole && !c.Admin {
		err = wire.Errorf(wire.CodeInsufficientPrivilege,
			"permission denied: %s needs a user in admin.admin_users; %q may only run SHOW", cmd.verb, c.User)
	}
	var msgs []pgproto3.BackendMessage
	if err == nil {
		ctx, cancel := context.WithCancel(c.Ctx)
		msgs, err = cmd.spec.run(con, ctx, cmd)
		cancel()
	}
	if err != nil {
		e := wire.AsError(err)
		if e.Code == wire.CodeInternalError {
			con.opts.Log.Error("admin command failed", "command", cmd.verb, "err", err)
		}
		be.Send(e.Response())
		return
	}
	if cmd.spec.role == adminRole {
		con.opts.Log.Info("admin command", "user", c.User, "command", cmd.String())
	}
	for _, m := range msgs {
		be.Send(m)
	}
}

// command is one parsed console command: "SHOW POOLS", "PAUSE app".
type command struct {
	verb string   // upper case: SHOW, PAUSE, …
	what string   // SHOW's subject, upper case
	args []string // database names, as typed
	spec *spec    // its line of the command table
}

func (c command) String() string {
	words := []string{c.verb}
	if c.what != "" {
		words = append(words, c.what)
	}
	return strings.Join(append(words, c.args...), " ")
}

// parse reads one command of the table: case-insensitive, a trailing ';'
// optional, database names as typed (double quotes allowed).
func parse(sql string) (command, error) {
	text := strings.TrimSpace(sql)
	text = strings.TrimSpace(strings.TrimRight(text, "; \t\r\n"))
	fields := strings.Fields(text)
	for i := 1; i < len(fields); i++ {
		fields[i] = strings.Trim(fields[i], `"`)
	}
	for i := range commands {
		if cmd, ok := commands[i].match(fields); ok {
			return cmd, nil
		}
	}
	if len(text) > 60 {
		text = text[:60] + "…"
	}
	return command{}, wire.Errorf(wire.CodeSyntaxError, "unknown admin console command %q", text).
		WithDetail("Commands: " + strings.Join(helpLines, ", ") + ".")
}
