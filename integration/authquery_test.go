package integration

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgswitch/pgswitch/config"
)

// groupMu serializes the creation of the pgswitch_md5 group.
var groupMu sync.Mutex

// createRole creates a login role on the primary, its password stored as
// SCRAM (the cluster's password_encryption) or, with md5, as an md5 hash
// (and the role may then log in to the servers with md5: the cluster's
// pg_hba.conf lets members of pgswitch_md5 do so). It is dropped when the
// test ends, after the test's proxies closed their connections.
func createPasswordRole(t *testing.T, name, password string, md5 bool) {
	t.Helper()
	ctx := testCtx(t)
	conn := primaryConn(t, cl.Database)
	if md5 {
		groupMu.Lock()
		_, err := conn.Exec(ctx, "DO $$ BEGIN CREATE ROLE pgswitch_md5 NOLOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$")
		groupMu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		mustExec(t, conn, "SET password_encryption = 'md5'")
	}
	mustExec(t, conn, fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD %s", pgx.Identifier{name}.Sanitize(), quoteLiteral(password)))
	if md5 {
		mustExec(t, conn, "RESET password_encryption")
		mustExec(t, conn, "GRANT pgswitch_md5 TO "+pgx.Identifier{name}.Sanitize())
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, cl.Primary.DSN(cl.User, cl.Password, cl.Database))
		if err != nil {
			return
		}
		defer c.Close(ctx)
		c.Exec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{name}.Sanitize())
	})
}

// setRolePassword changes a role's password on the primary.
func setRolePassword(t *testing.T, name, password string, md5 bool) {
	t.Helper()
	conn := primaryConn(t, cl.Database)
	if md5 {
		mustExec(t, conn, "SET password_encryption = 'md5'")
	}
	mustExec(t, conn, fmt.Sprintf("ALTER ROLE %s PASSWORD %s", pgx.Identifier{name}.Sanitize(), quoteLiteral(password)))
}

// roleName is a role name of the test's own: roles are the cluster's.
func roleName(what string) string {
	return fmt.Sprintf("aq_%s_%d", what, dbSeq.Add(1))
}

// authQueryYAML makes cl.User, a superuser configured in YAML, the
// auth_user, so that the default auth_query may read pg_shadow.
func authQueryYAML(extra string) string {
	return fmt.Sprintf("auth_user: %s\n", cl.User) + extra
}

// whoAmI logs in through addr as user and returns what the session says it
// is, or the login's error.
func whoAmI(ctx context.Context, url string) (string, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	var who string
	err = conn.QueryRow(ctx, "SELECT current_user || ' ' || session_user || ' ' || current_database()").Scan(&who)
	return who, err
}

func wantCode(t *testing.T, what string, err error, code string) {
	t.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != code {
		t.Fatalf("%s: got %v, want SQLSTATE %s", what, err, code)
	}
}

// TestAuthQuery: roles created on the server after pgswitch started log in
// through auth_query, one whose password is stored as SCRAM and one as
// md5, and pgswitch logs in to the server in their names with what they
// proved (it never knows their passwords). The client receives what it
// would directly, message for message: the same exchange, the same
// 28P01 for a wrong password; an unknown role goes through a whole
// exchange and gets 28P01 too.
func TestAuthQuery(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	scramRole, md5Role := roleName("scram"), roleName("md5")
	// auth_type md5 as PostgreSQL's md5: SCRAM for a SCRAM verifier.
	p := startProxy(t, proxyOptions{DBs: []string{db}, Primary: true, YAML: authQueryYAML("auth_type: md5\n")})
	scramOnly := startProxy(t, proxyOptions{DBs: []string{db}, Primary: true, YAML: authQueryYAML("")})
	createPasswordRole(t, scramRole, "scram-pw", false)
	createPasswordRole(t, md5Role, "md5-pw", true)
	ctx := testCtx(t)
	direct := net.JoinHostPort(cl.Primary.Host, strconv.Itoa(cl.Primary.Port))

	for _, c := range []struct {
		name, user, password string
		via                  *proxy
		wantFirst            string
	}{
		{"SCRAM role", scramRole, "scram-pw", p, "AuthenticationSASL SCRAM-SHA-256"},
		{"SCRAM role, wrong password", scramRole, "md5-pw", p, "AuthenticationSASL SCRAM-SHA-256"},
		{"md5 role", md5Role, "md5-pw", p, "AuthenticationMD5Password"},
		{"md5 role, wrong password", md5Role, "scram-pw", p, "AuthenticationMD5Password"},
		{"SCRAM role, auth_type scram-sha-256", scramRole, "scram-pw", scramOnly, "AuthenticationSASL SCRAM-SHA-256"},
		{"unknown role, auth_type scram-sha-256", "aq_nobody", "x", scramOnly, "AuthenticationSASL SCRAM-SHA-256"},
	} {
		t.Run(c.name, func(t *testing.T) {
			want, err := scramTranscript(direct, c.user, c.password, db)
			if err != nil {
				t.Fatalf("directly: %v", err)
			}
			got, err := scramTranscript(c.via.Addr, c.user, c.password, db)
			if err != nil {
				t.Fatalf("through pgswitch: %v", err)
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") || got[0] != c.wantFirst {
				t.Fatalf("through pgswitch the client received\n\t%s\ndirectly\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
			}
		})
	}

	// With auth_type md5, an unknown role is asked for md5 as a known md5
	// role is, and refused as a wrong password is.
	known, err := scramTranscript(p.Addr, md5Role, "wrong", db)
	if err != nil {
		t.Fatal(err)
	}
	unknown, err := scramTranscript(p.Addr, "aq_nobody", "wrong", db)
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.ReplaceAll(strings.Join(known, "\n"), md5Role, "aq_nobody"); strings.Join(unknown, "\n") != want ||
		!strings.Contains(want, " 28P01 ") {
		t.Fatalf("unknown role received\n\t%s\nan md5 role with a wrong password\n\t%s", strings.Join(unknown, "\n\t"), strings.Join(known, "\n\t"))
	}

	// Logged in, they are who they say, on the server, as directly.
	for _, c := range []struct{ user, password string }{{scramRole, "scram-pw"}, {md5Role, "md5-pw"}} {
		got, err := whoAmI(ctx, p.URLAs(c.user, c.password, db))
		if err != nil {
			t.Fatalf("%s through pgswitch: %v", c.user, err)
		}
		want, err := whoAmI(ctx, cl.Primary.DSN(c.user, c.password, db))
		if err != nil {
			t.Fatalf("%s directly: %v", c.user, err)
		}
		if got != want {
			t.Fatalf("%s: got %q through pgswitch, %q directly", c.user, got, want)
		}
	}
	_, err = whoAmI(ctx, p.URLAs(scramRole, "nope", db))
	wantCode(t, "wrong password with pgx", err, "28P01")

	// A reload keeps the sessions and pools of users auth_query found:
	// they are not "removed from the configuration".
	kept, err := pgx.Connect(ctx, p.URLAs(md5Role, "md5-pw", db))
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close(ctx)
	cfg, err := config.Parse([]byte(p.Text))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.R.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	var one int
	if err := kept.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatalf("after a reload, a session of a user auth_query found: %v", err)
	}
	if _, err := whoAmI(ctx, p.URLAs(scramRole, "scram-pw", db)); err != nil {
		t.Fatalf("after a reload, a new login: %v", err)
	}
	// An unknown database is named once the password is proved, as for a
	// configured user (the lookup ran in the client's database: not here,
	// so the role is not found).
	_, err = whoAmI(ctx, p.URLAs(scramRole, "scram-pw", "no_such_db"))
	wantCode(t, "unknown database", err, "28P01")
}

// TestAuthQueryPoolOfOne: several clients of roles found by auth_query,
// over pools of one server connection each, see what a direct connection
// would, each its own work: the one server connection of each pool was
// logged in by pass-through and is shared in turn.
func TestAuthQueryPoolOfOne(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	roles := []struct {
		name, password string
		md5            bool
	}{{roleName("scram"), "scram-pw-1", false}, {roleName("md5"), "md5-pw-1", true}}
	p := startProxy(t, proxyOptions{DBs: []string{db}, Primary: true, PoolSize: 1, YAML: authQueryYAML("auth_type: md5\n")})
	setup := primaryConn(t, db)
	mustExec(t, setup, "CREATE TABLE work (client int, n int)")
	for _, r := range roles {
		createPasswordRole(t, r.name, r.password, r.md5)
		mustExec(t, setup, "GRANT ALL ON work TO "+pgx.Identifier{r.name}.Sanitize())
	}
	ctx := testCtx(t)
	const perRole, rounds = 3, 10
	var wg sync.WaitGroup
	errs := make(chan error, len(roles)*perRole)
	for ri, r := range roles {
		want, err := whoAmI(ctx, cl.Primary.DSN(r.name, r.password, db))
		if err != nil {
			t.Fatalf("%s directly: %v", r.name, err)
		}
		for i := range perRole {
			client := ri*perRole + i
			wg.Go(func() {
				conn, err := pgx.Connect(ctx, p.URLAs(r.name, r.password, db))
				if err != nil {
					errs <- fmt.Errorf("client %d (%s): %w", client, r.name, err)
					return
				}
				defer conn.Close(ctx)
				for n := range rounds {
					var who string
					var count int
					tx, err := conn.Begin(ctx)
					if err == nil {
						_, err = tx.Exec(ctx, "INSERT INTO work VALUES ($1, $2)", client, n)
					}
					if err == nil {
						err = tx.QueryRow(ctx, "SELECT current_user || ' ' || session_user || ' ' || current_database(), (SELECT count(*) FROM work WHERE client = $1)", client).Scan(&who, &count)
					}
					if err == nil {
						err = tx.Commit(ctx)
					}
					if err != nil {
						errs <- fmt.Errorf("client %d (%s) round %d: %w", client, r.name, n, err)
						return
					}
					if who != want || count != n+1 {
						errs <- fmt.Errorf("client %d round %d: got %q and %d rows of its own, want %q and %d", client, n, who, count, want, n+1)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var total int
	if err := setup.QueryRow(ctx, "SELECT count(*) FROM work").Scan(&total); err != nil || total != len(roles)*perRole*rounds {
		t.Fatalf("got %d rows in all (%v), want %d", total, err, len(roles)*perRole*rounds)
	}
}

// TestAuthQueryCacheTime: a password changed on the server takes effect
// through pgswitch once auth_cache_time has passed since pgswitch looked
// it up, for SCRAM and md5 roles alike.
func TestAuthQueryCacheTime(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	const cacheTime = 2 * time.Second
	p := startProxy(t, proxyOptions{DBs: []string{db}, Primary: true,
		YAML: authQueryYAML(fmt.Sprintf("auth_type: md5\nauth_cache_time: %s\n", cacheTime))})
	ctx := testCtx(t)
	for _, md5 := range []bool{false, true} {
		role := roleName("cache")
		createPasswordRole(t, role, "old-pw", md5)
		looked := time.Now()
		if _, err := whoAmI(ctx, p.URLAs(role, "old-pw", db)); err != nil {
			t.Fatalf("md5 %v, old password: %v", md5, err)
		}
		setRolePassword(t, role, "new-pw", md5)
		// Within the cache time the old password still gets in (when this
		// loaded machine took less than that to get here).
		_, err := whoAmI(ctx, p.URLAs(role, "old-pw", db))
		if time.Since(looked) < cacheTime-200*time.Millisecond && err != nil {
			t.Fatalf("md5 %v, old password within auth_cache_time: %v", md5, err)
		}
		eventually(t, cacheTime+30*time.Second, "the new password", func() error {
			_, err := whoAmI(ctx, p.URLAs(role, "new-pw", db))
			return err
		})
		_, err = whoAmI(ctx, p.URLAs(role, "old-pw", db))
		wantCode(t, "old password after auth_cache_time", err, "28P01")
	}
}

// TestSCRAMPassThroughYAML: a user configured with only a SCRAM verifier
// (copied from pg_authid, so the same salt and iterations as the server's)
// and no server_password logs in to the server with the ClientKey its
// client's proof carries; a user with only an md5 verifier logs in with it.
// Several clients share a pool of one.
func TestSCRAMPassThroughYAML(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	scramRole, md5Role := roleName("pt_scram"), roleName("pt_md5")
	createPasswordRole(t, scramRole, "pt-scram-pw", false)
	createPasswordRole(t, md5Role, "pt-md5-pw", true)
	ctx := testCtx(t)
	verifier := func(role string) string {
		var v string
		if err := primaryConn(t, cl.Database).QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", role).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	scramVerifier, md5Verifier := verifier(scramRole), verifier(md5Role)
	if !strings.HasPrefix(scramVerifier, "SCRAM-SHA-256$") || !strings.HasPrefix(md5Verifier, "md5") {
		t.Fatalf("got verifiers of kinds %.14s and %.3s, want SCRAM-SHA-256 and md5", scramVerifier, md5Verifier)
	}
	users := fmt.Sprintf("  %s:\n    password: %q\n  %s:\n    auth: md5\n    password: %q\n", scramRole, scramVerifier, md5Role, md5Verifier)
	var log lockedBuffer
	p := startProxy(t, proxyOptions{DBs: []string{db}, Primary: true, PoolSize: 1, ExtraUsers: users,
		Log: slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	defer func() {
		// Neither passwords nor verifiers, nor a verifier's keys, are logged.
		text := log.String()
		secrets := []string{"pt-scram-pw", "pt-md5-pw", scramVerifier, md5Verifier, md5Verifier[3:]}
		for _, part := range strings.FieldsFunc(scramVerifier, func(r rune) bool { return r == '$' || r == ':' }) {
			if len(part) > 8 {
				secrets = append(secrets, part)
			}
		}
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("pgswitch's log holds a secret (%d characters)", len(s))
			}
		}
		if !strings.Contains(text, scramRole) {
			t.Errorf("pgswitch's log does not mention %s: was it captured?", scramRole)
		}
	}()

	for _, c := range []struct{ user, password string }{{scramRole, "pt-scram-pw"}, {md5Role, "pt-md5-pw"}} {
		want, err := whoAmI(ctx, cl.Primary.DSN(c.user, c.password, db))
		if err != nil {
			t.Fatalf("%s directly: %v", c.user, err)
		}
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				got, err := whoAmI(ctx, p.URLAs(c.user, c.password, db))
				if err != nil || got != want {
					t.Errorf("%s through pgswitch: got %q, %v; want %q", c.user, got, err, want)
				}
			})
		}
		wg.Wait()
		_, err = whoAmI(ctx, p.URLAs(c.user, "wrong", db))
		wantCode(t, c.user+" with a wrong password", err, "28P01")
	}
}

// TestCleartextPassword: the password method is refused without TLS
// (28000, before the client sends its password) unless
// allow_cleartext_without_tls; over TLS, or allowed, it logs in configured
// users and users found by auth_query alike, whose SCRAM verifier the
// cleartext password opens for pass-through.
func TestCleartextPassword(t *testing.T) {
	t.Parallel()
	db := newDatabase(t)
	role := roleName("clear")
	cert, key := writeCert(t)
	tlsYAML := fmt.Sprintf("tls:\n  cert_file: %q\n  key_file: %q\n", cert, key)
	refused := startProxy(t, proxyOptions{DBs: []string{db}, Primary: true, Unix: true, YAML: authQueryYAML("auth_type: password\n" + tlsYAML)})
	allowed := startProxy(t, proxyOptions{DBs: []string{db}, Primary: true, YAML: authQueryYAML("auth_type: plain\nallow_cleartext_without_tls: true\n")})
	createPasswordRole(t, role, "clear-pw", false)
	ctx := testCtx(t)

	// Without TLS: refused before the password is asked for.
	got, err := scramTranscript(refused.Addr, cl.User, cl.Password, db)
	if err != nil || len(got) != 1 || !strings.HasPrefix(got[0], "ErrorResponse FATAL 28000 ") {
		t.Fatalf("without TLS the client received %q (%v), want only FATAL 28000", got, err)
	}
	_, err = whoAmI(ctx, refused.URLAs(cl.User, cl.Password, db))
	wantCode(t, "cleartext without TLS", err, "28000")
	// Over TLS it works, for a configured user and one found by auth_query.
	overTLS := func(user, password string) string {
		return strings.Replace(refused.URLAs(user, password, db), "sslmode=disable", "sslmode=require", 1)
	}
	for _, c := range []struct{ user, password string }{{cl.User, cl.Password}, {role, "clear-pw"}} {
		if _, err := whoAmI(ctx, overTLS(c.user, c.password)); err != nil {
			t.Fatalf("%s over TLS: %v", c.user, err)
		}
	}
	_, err = whoAmI(ctx, overTLS(role, "wrong"))
	wantCode(t, "wrong password over TLS", err, "28P01")
	// Over the Unix socket, which never leaves the machine, it works
	// without TLS, as PostgreSQL's local password lines do.
	if _, err := whoAmI(ctx, refused.SocketConnString(role, "clear-pw", db)); err != nil {
		t.Fatalf("cleartext over the Unix socket: %v", err)
	}
	_, err = whoAmI(ctx, refused.SocketConnString(role, "wrong", db))
	wantCode(t, "wrong password over the Unix socket", err, "28P01")

	// Allowed without TLS.
	for _, c := range []struct{ user, password string }{{cl.User, cl.Password}, {role, "clear-pw"}} {
		if _, err := whoAmI(ctx, allowed.URLAs(c.user, c.password, db)); err != nil {
			t.Fatalf("%s allowed without TLS: %v", c.user, err)
		}
	}
	_, err = whoAmI(ctx, allowed.URLAs(role, "wrong", db))
	wantCode(t, "wrong password", err, "28P01")
	_, err = whoAmI(ctx, allowed.URLAs("aq_nobody", "x", db))
	wantCode(t, "unknown role", err, "28P01")
}

// TestAuthQueryFunction: the setup pgswitch.yaml recommends. auth_user is
// no superuser; it may only call a SECURITY DEFINER function that reads
// pg_shadow, installed in one database, which auth_dbname names, while
// clients log in to another. Without auth_dbname the lookup runs in the
// client's database, where the function is missing: the client is told
// that the lookup failed (08006), nothing about the role.
func TestAuthQueryFunction(t *testing.T) {
	t.Parallel()
	authDB, appDB := newDatabase(t), newDatabase(t)
	lookupRole, role := roleName("lookup"), roleName("fn")
	createPasswordRole(t, lookupRole, "lookup-pw", false)
	setup := primaryConn(t, authDB)
	mustExec(t, setup, "CREATE SCHEMA pgswitch")
	mustExec(t, setup, `CREATE FUNCTION pgswitch.lookup(u text, OUT usename name, OUT passwd text)
		RETURNS record LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog
		AS $$ SELECT usename, passwd FROM pg_shadow WHERE usename = u $$`)
	mustExec(t, setup, "REVOKE ALL ON FUNCTION pgswitch.lookup(text) FROM PUBLIC")
	mustExec(t, setup, "GRANT USAGE ON SCHEMA pgswitch TO "+pgx.Identifier{lookupRole}.Sanitize())
	mustExec(t, setup, "GRANT EXECUTE ON FUNCTION pgswitch.lookup(text) TO "+pgx.Identifier{lookupRole}.Sanitize())
	users := fmt.Sprintf("  %s:\n    password: %q\n", lookupRole, "lookup-pw")
	yaml := fmt.Sprintf("auth_user: %s\nauth_query: SELECT usename, passwd FROM pgswitch.lookup($1)\n", lookupRole)
	p := startProxy(t, proxyOptions{DBs: []string{authDB, appDB}, Primary: true, ExtraUsers: users, YAML: yaml + "auth_dbname: " + authDB + "\n"})
	inClientDB := startProxy(t, proxyOptions{DBs: []string{authDB, appDB}, Primary: true, ExtraUsers: users, YAML: yaml})
	createPasswordRole(t, role, "fn-pw", false)
	ctx := testCtx(t)

	want, err := whoAmI(ctx, cl.Primary.DSN(role, "fn-pw", appDB))
	if err != nil {
		t.Fatalf("directly: %v", err)
	}
	if got, err := whoAmI(ctx, p.URLAs(role, "fn-pw", appDB)); err != nil || got != want {
		t.Fatalf("through pgswitch with auth_dbname: got %q, %v; want %q", got, err, want)
	}
	_, err = whoAmI(ctx, p.URLAs(role, "wrong", appDB))
	wantCode(t, "wrong password", err, "28P01")
	_, err = whoAmI(ctx, inClientDB.URLAs(role, "fn-pw", appDB))
	wantCode(t, "lookup in a database without the function", err, "08006")
	if got, err := whoAmI(ctx, inClientDB.URLAs(role, "fn-pw", authDB)); err != nil || !strings.HasPrefix(got, role+" ") {
		t.Fatalf("lookup in the client's database, which has the function: got %q, %v", got, err)
	}
}

// lockedBuffer is a log destination that goroutines may share.
type lockedBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
