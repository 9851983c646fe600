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
	"time"

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
	// Shutdown starts pgswitch's shutdown for SHUTDOWN; it must not wait
	// for it. Nil: SHUTDOWN fails.
	Shutdown func()
	Log      *slog.Logger
}

// Console serves the admin console of one router.
type Console struct {
	r    *router.Router
	opts Options
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
	if err == nil && cmd.verb != "SHOW" && !c.Admin {
		err = wire.Errorf(wire.CodeInsufficientPrivilege,
			"permission denied: %s needs a user in admin.admin_users; %q may only run SHOW", cmd.verb, c.User)
	}
	var msgs []pgproto3.BackendMessage
	if err == nil {
		ctx, cancel := context.WithCancel(c.Ctx)
		msgs, err = con.exec(ctx, cmd)
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
	if cmd.verb != "SHOW" {
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
}

func (c command) String() string {
	words := []string{c.verb}
	if c.what != "" {
		words = append(words, c.what)
	}
	return strings.Join(append(words, c.args...), " ")
}

// commandList is the help text and the list an unknown command is told.
var commandList = []string{
	"SHOW HELP|VERSION|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|STATS|STATS_TOTALS|STATS_AVERAGES|LISTS|HEALTH|ROUTES",
	"PAUSE [db]", "RESUME [db]", "RECONNECT [db]", "WAIT_CLOSE [db]",
	"KILL db", "DISABLE db", "ENABLE db", "RELOAD", "SHUTDOWN",
}

var showSubjects = []string{"HELP", "VERSION", "CONFIG", "DATABASES", "POOLS", "CLIENTS", "SERVERS", "STATS",
	"STATS_TOTALS", "STATS_AVERAGES", "LISTS", "HEALTH", "ROUTES"}

// parse reads one command: case-insensitive, a trailing ';' optional,
// database names as typed (double quotes allowed).
func parse(sql string) (command, error) {
	text := strings.TrimSpace(sql)
	text = strings.TrimSpace(strings.TrimRight(text, "; \t\r\n"))
	fields := strings.Fields(text)
	unknown := func() (command, error) {
		shown := text
		if len(shown) > 60 {
			shown = shown[:60] + "…"
		}
		return command{}, wire.Errorf(wire.CodeSyntaxError, "unknown admin console command %q", shown).
			WithDetail("Commands: " + strings.Join(commandList, ", ") + ".")
	}
	if len(fields) == 0 {
		return unknown()
	}
	cmd := command{verb: strings.ToUpper(fields[0])}
	args := fields[1:]
	for i, a := range args {
		args[i] = strings.Trim(a, `"`)
	}
	switch cmd.verb {
	case "SHOW":
		if len(args) != 1 {
			return unknown()
		}
		cmd.what = strings.ToUpper(args[0])
		for _, s := range showSubjects {
			if s == cmd.what {
				return cmd, nil
			}
		}
		return unknown()
	case "PAUSE", "RESUME", "RECONNECT", "WAIT_CLOSE":
		if len(args) > 1 {
			return unknown()
		}
	case "KILL", "DISABLE", "ENABLE":
		if len(args) != 1 {
			return unknown()
		}
	case "RELOAD", "SHUTDOWN":
		if len(args) != 0 {
			return unknown()
		}
	default:
		return unknown()
	}
	cmd.args = args
	return cmd, nil
}

// exec runs cmd and returns its answer.
func (con *Console) exec(ctx context.Context, cmd command) ([]pgproto3.BackendMessage, error) {
	if cmd.verb == "SHOW" {
		return con.show(cmd.what)
	}
	r := con.r
	var err error
	switch cmd.verb {
	case "PAUSE":
		err = r.Pause(ctx, cmd.args)
	case "RESUME":
		err = r.Resume(cmd.args)
	case "RECONNECT":
		err = r.Reconnect(cmd.args)
	case "WAIT_CLOSE":
		ctx, cancel := context.WithTimeout(ctx, r.Config().Timeouts.Pause)
		defer cancel()
		err = r.WaitClose(ctx, cmd.args)
	case "KILL":
		err = r.Kill(cmd.args[0])
	case "DISABLE":
		err = r.Disable(cmd.args[0])
	case "ENABLE":
		err = r.Enable(cmd.args[0])
	case "RELOAD":
		err = con.reload()
	case "SHUTDOWN":
		if con.opts.Shutdown == nil {
			return nil, wire.Errorf(wire.CodeFeatureNotSupported, "SHUTDOWN is not available in this process")
		}
		con.opts.Shutdown()
	}
	if err != nil {
		return nil, err
	}
	return []pgproto3.BackendMessage{&pgproto3.CommandComplete{CommandTag: []byte(cmd.verb)}}, nil
}

// reload reads the configuration again and applies it; a configuration with
// errors is refused whole and the running one stays.
func (con *Console) reload() error {
	if con.opts.Load == nil {
		return wire.Errorf(wire.CodeFeatureNotSupported, "RELOAD: this pgswitch has no configuration file")
	}
	cfg, err := con.opts.Load()
	if err == nil {
		err = con.r.Reload(cfg)
	}
	if err != nil {
		con.opts.Log.Error("reload refused; the running configuration stays", "err", err)
		return wire.Errorf(wire.CodeConfigFileError, "configuration not reloaded: %s", oneLine(err.Error())).
			WithHint("The running configuration stays in force.")
	}
	return nil
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", "; ") }

// uptime is how long the router has run, at least a second.
func (con *Console) uptime() time.Duration {
	return max(time.Since(con.r.Started()), time.Second)
}
