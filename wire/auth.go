package wire

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgswitch/pgswitch/wire/saslprep"
)

// MaxAuthMessageSize bounds the body of a client message during
// authentication: SCRAM and password messages are a few hundred bytes, and
// a client not yet authenticated must not make us allocate more.
const MaxAuthMessageSize = 10000

// scramMechanism is the only SASL mechanism offered: no channel binding
// (SCRAM-SHA-256-PLUS), so a client's "p=" flag is refused.
const scramMechanism = "SCRAM-SHA-256"

// scramIterations is the PBKDF2 cost of verifiers derived from plain
// passwords, PostgreSQL's default scram_iterations.
const scramIterations = 4096

// ErrInvalidSecret is wrapped by ParseSecret's errors.
var ErrInvalidSecret = errors.New("invalid password secret")

type secretKind uint8

const (
	secretPlain secretKind = iota + 1
	secretSCRAM
	secretMD5
)

// Secret is what pgswitch knows about a user's password: the password
// itself, a SCRAM-SHA-256 verifier or an md5 hash. It never prints its
// content (String redacts), so it is safe to log by accident. The zero
// Secret stands for an unknown user: authentication runs, then fails.
type Secret struct {
	kind  secretKind
	plain string // secretPlain: the password, for md5
	md5   string // secretMD5: "md5" + hex(md5(password + user))
	// secretSCRAM: the parsed verifier; secretPlain: the verifier derived
	// by ParseSecret, so that no login pays for the key derivation.
	scram scramKeys
}

// ParseSecret reads a password as written in configuration: a SCRAM verifier
// "SCRAM-SHA-256$<iterations>:<salt base64>$<StoredKey base64>:<ServerKey
// base64>" (as in pg_authid), an md5 hash "md5" followed by 32 lower-case hex
// digits, or else a plain-text password. As in PostgreSQL, a string that is
// not exactly an md5 hash is a plain password; unlike PostgreSQL, a malformed
// SCRAM verifier is an error rather than a password, since it is a typo.
//
// For a plain password it derives the SCRAM verifier at once (PBKDF2 with
// 4096 iterations, about a millisecond of CPU), with the salt this process
// shows for user whether or not the user exists (see userSalt), so that a
// login costs no derivation and reveals nothing by its salt.
func ParseSecret(password string, user string) (Secret, error) {
	switch {
	case password == "":
		return Secret{}, fmt.Errorf("secret for user %q: empty password: %w", user, ErrInvalidSecret)
	case strings.HasPrefix(password, scramMechanism+"$"):
		s, err := parseSCRAMVerifier(password)
		if err != nil {
			return Secret{}, fmt.Errorf("secret for user %q: %w: %w", user, ErrInvalidSecret, err)
		}
		return s, nil
	case isMD5Hash(password):
		return Secret{kind: secretMD5, md5: password}, nil
	default:
		keys, err := deriveSCRAMKeys(password, userSalt(user), scramIterations)
		if err != nil {
			return Secret{}, fmt.Errorf("secret for user %q: %w", user, err)
		}
		return Secret{kind: secretPlain, plain: password, scram: keys}, nil
	}
}

// isMD5Hash follows PostgreSQL's get_password_type.
func isMD5Hash(s string) bool {
	if len(s) != 35 || !strings.HasPrefix(s, "md5") {
		return false
	}
	for _, c := range []byte(s[3:]) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// parseSCRAMVerifier reads "SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>".
// Its errors say which part is wrong, never what it holds.
func parseSCRAMVerifier(v string) (Secret, error) {
	rest := strings.TrimPrefix(v, scramMechanism+"$")
	params, keys, ok := strings.Cut(rest, "$")
	if !ok {
		return Secret{}, errors.New("SCRAM verifier: want <iterations>:<salt>$<StoredKey>:<ServerKey>")
	}
	iterText, saltText, ok1 := strings.Cut(params, ":")
	storedText, serverText, ok2 := strings.Cut(keys, ":")
	if !ok1 || !ok2 {
		return Secret{}, errors.New("SCRAM verifier: want <iterations>:<salt>$<StoredKey>:<ServerKey>")
	}
	iter, err := strconv.ParseInt(iterText, 10, 32)
	if err != nil || iter < 1 {
		return Secret{}, errors.New("SCRAM verifier: iterations must be a positive 32-bit integer")
	}
	salt, err := base64.StdEncoding.DecodeString(saltText)
	if err != nil || len(salt) == 0 {
		return Secret{}, errors.New("SCRAM verifier: salt is not non-empty base64")
	}
	stored, err := base64.StdEncoding.DecodeString(storedText)
	if err != nil || len(stored) != sha256.Size {
		return Secret{}, errors.New("SCRAM verifier: StoredKey is not 32 bytes of base64")
	}
	server, err := base64.StdEncoding.DecodeString(serverText)
	if err != nil || len(server) != sha256.Size {
		return Secret{}, errors.New("SCRAM verifier: ServerKey is not 32 bytes of base64")
	}
	return Secret{kind: secretSCRAM, scram: scramKeys{salt: salt, iterations: int(iter), storedKey: stored, serverKey: server}}, nil
}

// CanMD5 reports whether s can check an md5 password exchange. A SCRAM
// verifier cannot; PostgreSQL then runs SCRAM even where md5 is configured.
func (s Secret) CanMD5() bool { return s.kind == secretPlain || s.kind == secretMD5 }

// String describes the kind of s, never its content.
func (s Secret) String() string {
	switch s.kind {
	case secretPlain:
		return "wire.Secret(plain password)"
	case secretSCRAM:
		return "wire.Secret(SCRAM-SHA-256 verifier)"
	case secretMD5:
		return "wire.Secret(md5 hash)"
	}
	return "wire.Secret(none)"
}

// GoString keeps %#v from printing the fields.
func (s Secret) GoString() string { return s.String() }

// authFailed is PostgreSQL's answer to any wrong password, word for word.
func authFailed(user string) *Error {
	return Fatalf(CodeInvalidPassword, "password authentication failed for user %q", user)
}

// malformedSCRAM is PostgreSQL's answer to a SCRAM message it cannot read.
func malformedSCRAM(detail string) *Error {
	return Fatalf(CodeProtocolViolation, "malformed SCRAM message").WithDetail(detail)
}

// scramKeys is the part of a verifier the server side needs.
type scramKeys struct {
	salt                 []byte
	iterations           int
	storedKey, serverKey []byte
}

// scramKeys returns the verifier to run the exchange for user against.
// Without a usable secret it returns a mock verifier, which no proof
// matches, and the reason the exchange must fail. The mock has the salt and
// iteration count a plain password of user's would have, so that a client
// cannot tell an unknown user (or one whose secret cannot verify SCRAM)
// from a known one, nor see a salt change between attempts.
func (s Secret) scramKeys(user string) (keys scramKeys, mock error) {
	switch s.kind {
	case secretSCRAM, secretPlain:
		return s.scram, nil
	case secretMD5:
		mock = errors.New("an md5 hash cannot verify SCRAM-SHA-256")
	default:
		mock = errors.New("no secret for this user")
	}
	random := make([]byte, 2*sha256.Size)
	_, _ = rand.Read(random)
	return scramKeys{salt: userSalt(user), iterations: scramIterations, storedKey: random[:32], serverKey: random[32:]}, mock
}

// saltKey is this process's secret for userSalt.
var saltKey = func() []byte {
	k := make([]byte, sha256.Size)
	_, _ = rand.Read(k)
	return k
}()

// userSalt returns the salt this process gives the verifiers it derives
// for user, real or mock: the first 16 bytes (PostgreSQL's salt length) of an HMAC of
// the name under a per-process secret. As PostgreSQL's scram_mock_salt, it
// is stable for a name and cannot be predicted from it; unlike it, it
// changes when pgswitch restarts, for known and unknown plain-password
// users alike.
func userSalt(user string) []byte {
	return hmacSHA256(saltKey, user)[:16]
}

// deriveSCRAMKeys computes a verifier from a password (RFC 5802 §3),
// SASLprep-prepared as PostgreSQL and libpq prepare it.
func deriveSCRAMKeys(password string, salt []byte, iterations int) (scramKeys, error) {
	salted, err := pbkdf2.Key(sha256.New, saslprep.Password(password), salt, iterations, sha256.Size)
	if err != nil {
		return scramKeys{}, err
	}
	stored := sha256.Sum256(hmacSHA256(salted, "Client Key"))
	return scramKeys{salt: salt, iterations: iterations, storedKey: stored[:], serverKey: hmacSHA256(salted, "Server Key")}, nil
}

// verify reports whether proof shows knowledge of the password for
// authMessage, comparing in constant time, and returns the ClientKey the
// proof carries (RFC 5802: ClientProof XOR ClientSignature), whose hash
// is the StoredKey when it does.
func (k scramKeys) verify(authMessage string, proof []byte) (clientKey []byte, ok bool) {
	if len(proof) != sha256.Size {
		return nil, false
	}
	clientKey = hmacSHA256(k.storedKey, authMessage) // the ClientSignature, for now
	for i := range clientKey {
		clientKey[i] ^= proof[i]
	}
	stored := sha256.Sum256(clientKey)
	if !hmac.Equal(stored[:], k.storedKey) {
		return nil, false
	}
	return clientKey, true
}

// serverFinal returns the server-final-message that proves to the client
// that we know the verifier too.
func (k scramKeys) serverFinal(authMessage string) string {
	return "v=" + base64.StdEncoding.EncodeToString(hmacSHA256(k.serverKey, authMessage))
}

func hmacSHA256(key []byte, msg string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(msg))
	return h.Sum(nil)
}

// AuthenticateSCRAM runs SCRAM-SHA-256 (RFC 5802/7677, without channel
// binding) with the client on rw, for the user of the startup packet; the
// user name inside the SCRAM messages is ignored, as PostgreSQL does. It
// does not send AuthenticationOk: the caller does once the session is ready.
// Errors are FATAL *Error values: 28P01 for a wrong password, 08P01 for a
// malformed exchange.
//
// With a zero Secret (an unknown user) or an md5 hash, the exchange runs
// against a mock verifier and ends in 28P01, as in PostgreSQL: a client
// cannot tell an unknown user from a wrong password, by the messages or by
// the salt and iteration count it is shown (see Secret.scramKeys). The
// exchange derives no keys: ParseSecret did.
func AuthenticateSCRAM(rw io.ReadWriter, user string, s Secret) error {
	_, err := AuthenticateSCRAMKey(rw, user, s)
	return err
}

// AuthenticateSCRAMKey is AuthenticateSCRAM, and returns what the client
// proved: the ClientKey that logs pgswitch in to a server holding the
// same verifier (see PassThrough).
func AuthenticateSCRAMKey(rw io.ReadWriter, user string, s Secret) (ClientKey, error) {
	keys, mock := s.scramKeys(user)
	if err := send(rw, &pgproto3.AuthenticationSASL{AuthMechanisms: []string{scramMechanism}}); err != nil {
		return ClientKey{}, err
	}

	body, err := readPasswordMessage(rw, "SASL")
	if err != nil {
		return ClientKey{}, err
	}
	clientFirst, err := parseSASLInitialResponse(body)
	if err != nil {
		return ClientKey{}, err
	}
	first, err := parseClientFirst(clientFirst)
	if err != nil {
		return ClientKey{}, err
	}

	var nb [18]byte
	_, _ = rand.Read(nb[:])
	nonce := first.nonce + base64.StdEncoding.EncodeToString(nb[:])
	serverFirst := "r=" + nonce + ",s=" + base64.StdEncoding.EncodeToString(keys.salt) + ",i=" + strconv.Itoa(keys.iterations)
	if err := send(rw, &pgproto3.AuthenticationSASLContinue{Data: []byte(serverFirst)}); err != nil {
		return ClientKey{}, err
	}

	body, err = readPasswordMessage(rw, "SASL")
	if err != nil {
		return ClientKey{}, err
	}
	final, err := parseClientFinal(string(body), first.gs2Header, nonce)
	if err != nil {
		return ClientKey{}, err
	}

	authMessage := first.bare + "," + serverFirst + "," + final.withoutProof
	if mock != nil {
		return ClientKey{}, authFailed(user).WithCause(mock)
	}
	clientKey, ok := keys.verify(authMessage, final.proof)
	if !ok {
		return ClientKey{}, authFailed(user)
	}
	if err := send(rw, &pgproto3.AuthenticationSASLFinal{Data: []byte(keys.serverFinal(authMessage))}); err != nil {
		return ClientKey{}, err
	}
	return ClientKey{keys: keys, key: clientKey}, nil
}

// AuthenticateMD5 asks the client for an md5-hashed password with a random
// salt and checks the reply against a plain password or an md5 hash. It
// does not send AuthenticationOk. A SCRAM verifier cannot check md5 (see
// CanMD5): with one, or with a zero Secret (an unknown user), the exchange
// runs and ends in 28P01, the reason being the error's cause.
func AuthenticateMD5(rw io.ReadWriter, user string, s Secret) error {
	var hash string // "md5" + hex(md5(password + user))
	var mock error  // why the exchange must fail whatever the client says
	switch s.kind {
	case secretMD5:
		hash = s.md5
	case secretPlain:
		sum := md5.Sum([]byte(s.plain + user))
		hash = "md5" + hex.EncodeToString(sum[:])
	default:
		// Run the exchange all the same, so that the client cannot tell.
		var random [16]byte
		_, _ = rand.Read(random[:])
		hash = "md5" + hex.EncodeToString(random[:])
		mock = errors.New("only a plain password or an md5 hash can verify md5")
	}
	var salt [4]byte
	_, _ = rand.Read(salt[:])
	if err := send(rw, &pgproto3.AuthenticationMD5Password{Salt: salt}); err != nil {
		return err
	}
	body, err := readPasswordMessage(rw, "password")
	if err != nil {
		return err
	}
	var msg pgproto3.PasswordMessage
	if err := msg.Decode(body); err != nil || len(msg.Password)+1 != len(body) {
		return Fatalf(CodeProtocolViolation, "invalid password packet size")
	}
	sum := md5.Sum(append([]byte(hash[3:]), salt[:]...))
	want := "md5" + hex.EncodeToString(sum[:])
	if mock != nil {
		return authFailed(user).WithCause(mock)
	}
	if !hmac.Equal([]byte(msg.Password), []byte(want)) {
		return authFailed(user)
	}
	return nil
}

// AuthenticatePassword asks the client for its password in cleartext
// (PostgreSQL's "password" method) and checks it as PostgreSQL does:
// against a plain password, against an md5 hash of it and the user name,
// or against a SCRAM verifier by deriving the keys with the verifier's
// salt and iterations. It does not send AuthenticationOk. For a SCRAM
// verifier it returns the ClientKey the password gives (see PassThrough).
// The caller decides whether the connection is safe for a cleartext
// password; with a zero Secret (an unknown user) the exchange runs and
// ends in 28P01.
func AuthenticatePassword(rw io.ReadWriter, user string, s Secret) (ClientKey, error) {
	if err := send(rw, &pgproto3.AuthenticationCleartextPassword{}); err != nil {
		return ClientKey{}, err
	}
	body, err := readPasswordMessage(rw, "password")
	if err != nil {
		return ClientKey{}, err
	}
	var msg pgproto3.PasswordMessage
	if err := msg.Decode(body); err != nil || len(msg.Password)+1 != len(body) {
		return ClientKey{}, Fatalf(CodeProtocolViolation, "invalid password packet size")
	}
	password := msg.Password
	if password == "" {
		return ClientKey{}, authFailed(user).WithCause(errors.New("empty password returned by client"))
	}
	switch s.kind {
	case secretPlain:
		if !hmac.Equal([]byte(password), []byte(s.plain)) {
			return ClientKey{}, authFailed(user)
		}
		return ClientKey{}, nil
	case secretMD5:
		sum := md5.Sum([]byte(password + user))
		if !hmac.Equal([]byte("md5"+hex.EncodeToString(sum[:])), []byte(s.md5)) {
			return ClientKey{}, authFailed(user)
		}
		return ClientKey{}, nil
	case secretSCRAM:
		salted, err := pbkdf2.Key(sha256.New, saslprep.Password(password), s.scram.salt, s.scram.iterations, sha256.Size)
		if err != nil {
			return ClientKey{}, authFailed(user).WithCause(err)
		}
		clientKey := hmacSHA256(salted, "Client Key")
		stored := sha256.Sum256(clientKey)
		if !hmac.Equal(stored[:], s.scram.storedKey) || !hmac.Equal(hmacSHA256(salted, "Server Key"), s.scram.serverKey) {
			return ClientKey{}, authFailed(user)
		}
		return ClientKey{keys: s.scram, key: clientKey}, nil
	}
	return ClientKey{}, authFailed(user).WithCause(errors.New("no secret for this user"))
}

// send writes one authentication request to the client.
func send(w io.Writer, msg pgproto3.BackendMessage) error {
	out, err := msg.Encode(nil)
	if err != nil {
		return Fatalf(CodeInternalError, "internal error").WithCause(err)
	}
	if _, err := w.Write(out); err != nil {
		return Fatalf(CodeConnectionFailure, "could not send authentication request").WithCause(err)
	}
	return nil
}

// readPasswordMessage reads the client's next message, which must be a
// PasswordMessage ('p', also used for SASL), and returns its body; what
// names the expected response in the error, as PostgreSQL words it.
func readPasswordMessage(r io.Reader, what string) ([]byte, error) {
	var hdr [HeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, Fatalf(CodeProtocolViolation, "unexpected EOF on client connection").WithCause(err)
	}
	if hdr[0] != 'p' {
		return nil, Fatalf(CodeProtocolViolation, "expected %s response, got message type %d", what, hdr[0])
	}
	h, err := ParseHeader(hdr[:], MaxAuthMessageSize)
	if err != nil {
		return nil, err
	}
	body := make([]byte, h.Len)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, Fatalf(CodeProtocolViolation, "unexpected EOF on client connection").WithCause(err)
	}
	return body, nil
}

// parseSASLInitialResponse checks the mechanism and the length field of a
// SASLInitialResponse body and returns its data.
func parseSASLInitialResponse(body []byte) (string, error) {
	var msg pgproto3.SASLInitialResponse
	if err := msg.Decode(body); err != nil {
		return "", Fatalf(CodeProtocolViolation, "invalid SASL initial response").WithCause(err)
	}
	if msg.AuthMechanism != scramMechanism {
		return "", Fatalf(CodeProtocolViolation, "client selected an invalid SASL authentication mechanism")
	}
	// pgproto3 skips the data length; a wrong one means a confused client.
	n := int32(binary.BigEndian.Uint32(body[len(msg.AuthMechanism)+1:]))
	if int(n) != len(msg.Data) && !(n == -1 && len(msg.Data) == 0) {
		return "", Fatalf(CodeProtocolViolation, "invalid SASL initial response").WithDetail("Data length does not match the message length.")
	}
	return string(msg.Data), nil
}

// clientFirst is what a client-first-message says.
type clientFirst struct {
	gs2Header string // "n,," or "y,,", to check against client-final's c=
	bare      string // client-first-message-bare, part of the AuthMessage
	nonce     string
}

// parseClientFirst reads gs2-header "n=user,r=nonce[,ext...]" (RFC 5802 §7).
func parseClientFirst(msg string) (clientFirst, error) {
	parts := strings.Split(msg, ",")
	if len(parts) < 4 {
		return clientFirst{}, malformedSCRAM("Expected a client-first-message.")
	}
	switch {
	case parts[0] == "n" || parts[0] == "y":
		// "y": the client could bind but saw no -PLUS mechanism; fine, as we have none.
	case strings.HasPrefix(parts[0], "p="):
		return clientFirst{}, Fatalf(CodeProtocolViolation, "malformed SCRAM message").
			WithDetail("The client selected SCRAM-SHA-256 without channel binding, but the SCRAM message includes channel binding data.")
	default:
		return clientFirst{}, malformedSCRAM("Unexpected channel-binding flag.")
	}
	if parts[1] != "" {
		return clientFirst{}, Fatalf(CodeFeatureNotSupported, "client uses authorization identity, but it is not supported")
	}
	if strings.HasPrefix(parts[2], "m=") {
		return clientFirst{}, Fatalf(CodeFeatureNotSupported, "client requires an unsupported SCRAM extension")
	}
	if !strings.HasPrefix(parts[2], "n=") {
		return clientFirst{}, malformedSCRAM(`Expected attribute "n".`)
	}
	nonce, ok := strings.CutPrefix(parts[3], "r=")
	if !ok || nonce == "" || !printable(nonce) {
		return clientFirst{}, malformedSCRAM(`Expected attribute "r" with a printable nonce.`)
	}
	for _, ext := range parts[4:] {
		if !isAttribute(ext) {
			return clientFirst{}, malformedSCRAM("Malformed extension attribute.")
		}
	}
	return clientFirst{
		gs2Header: parts[0] + ",,",
		bare:      msg[len(parts[0])+2:],
		nonce:     nonce,
	}, nil
}

// clientFinal is what a client-final-message says.
type clientFinal struct {
	withoutProof string // client-final-message-without-proof, for the AuthMessage
	proof        []byte // sha256.Size bytes
}

// parseClientFinal reads "c=<gs2 header b64>,r=<nonce>[,ext...],p=<proof>",
// checking the channel binding and the nonce against the exchange so far.
func parseClientFinal(msg, gs2Header, nonce string) (clientFinal, error) {
	parts := strings.Split(msg, ",")
	if len(parts) < 3 {
		return clientFinal{}, malformedSCRAM("Expected a client-final-message.")
	}
	cbind, ok := strings.CutPrefix(parts[0], "c=")
	if !ok {
		return clientFinal{}, malformedSCRAM(`Expected attribute "c".`)
	}
	if cbind != base64.StdEncoding.EncodeToString([]byte(gs2Header)) {
		return clientFinal{}, Fatalf(CodeProtocolViolation, "SCRAM channel binding check failed")
	}
	got, ok := strings.CutPrefix(parts[1], "r=")
	if !ok {
		return clientFinal{}, malformedSCRAM(`Expected attribute "r".`)
	}
	if got != nonce {
		return clientFinal{}, Fatalf(CodeProtocolViolation, "invalid SCRAM response").WithDetail("Nonce does not match.")
	}
	for _, ext := range parts[2 : len(parts)-1] {
		if !isAttribute(ext) || ext[0] == 'p' {
			return clientFinal{}, malformedSCRAM("Malformed extension attribute.")
		}
	}
	last := parts[len(parts)-1]
	p, ok := strings.CutPrefix(last, "p=")
	if !ok {
		return clientFinal{}, malformedSCRAM(`Expected attribute "p" last.`)
	}
	proof, err := base64.StdEncoding.DecodeString(p)
	if err != nil || len(proof) != sha256.Size {
		return clientFinal{}, malformedSCRAM("Malformed proof in client-final-message.")
	}
	return clientFinal{withoutProof: msg[:len(msg)-len(last)-1], proof: proof}, nil
}

// isAttribute reports whether s is "<letter>=<value>" (RFC 5802's attr-val).
func isAttribute(s string) bool {
	return len(s) >= 2 && s[1] == '=' && (s[0] >= 'a' && s[0] <= 'z' || s[0] >= 'A' && s[0] <= 'Z')
}

// printable reports whether s holds only RFC 5802 "printable" characters:
// ASCII 0x21-0x7e except ','.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e || s[i] == ',' {
			return false
		}
	}
	return true
}
