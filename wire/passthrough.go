package wire

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgproto3"
)

// ClientKey is what a client's login proved about its password without
// revealing it: the ClientKey of RFC 5802 (ClientProof XOR
// ClientSignature; its hash is the verifier's StoredKey), with the verifier
// it was proved against. It answers a server's SCRAM exchange in the
// user's name when the server holds the same verifier (see PassThrough).
// The zero ClientKey proves nothing. Like Secret, it never prints its
// content.
type ClientKey struct {
	keys scramKeys
	key  []byte
}

// Valid reports whether k holds a key.
func (k ClientKey) Valid() bool { return k.key != nil }

// String says whether k holds a key, never the key.
func (k ClientKey) String() string {
	if k.Valid() {
		return "wire.ClientKey(SCRAM-SHA-256)"
	}
	return "wire.ClientKey(none)"
}

// GoString keeps %#v from printing the fields.
func (k ClientKey) GoString() string { return k.String() }

// ErrNoPassThrough is wrapped by PassThrough.Answer's errors when pgswitch
// has nothing to answer the server's request with.
var ErrNoPassThrough = errors.New("nothing to log in with")

// PassThrough logs pgswitch in to servers in the name of a user whose
// password it does not know, with what it learned from that user's
// clients (PgBouncer's SCRAM pass-through): the md5 hash of an md5
// verifier answers a server's md5 request, and the ClientKey of the last
// client that proved the user's SCRAM verifier answers a server's SCRAM
// exchange. The server must hold the same verifier: the same salt and
// iterations, so that the same ClientKey fits. Safe for concurrent use.
type PassThrough struct {
	mu  sync.Mutex
	md5 string    // "md5" + hex(md5(password + user)), or ""
	key ClientKey // the latest a client proved
}

// Learn keeps what a client's successful login against s showed: s's md5
// hash, if it is one, and the ClientKey the client proved, if any.
func (p *PassThrough) Learn(s Secret, k ClientKey) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s.kind == secretMD5 {
		p.md5 = s.md5
	}
	if k.Valid() {
		p.key = k
	}
}

func (p *PassThrough) known() (md5Hash string, k ClientKey) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.md5, p.key
}

// Authentication request codes (AuthenticationXxx messages).
const (
	authOK                = 0
	authCleartextPassword = 3
	authMD5Password       = 5
	authSASL              = 10
	authSASLContinue      = 11
	authSASLFinal         = 12
)

// AuthRequest returns the code of an authentication request message ('R'
// and its body), or -1 for any other message.
func AuthRequest(msg []byte) int {
	if len(msg) < HeaderSize+4 || msg[0] != 'R' {
		return -1
	}
	return int(binary.BigEndian.Uint32(msg[HeaderSize:]))
}

// Answers reports whether Answer handles the authentication request code.
func (p *PassThrough) Answers(code int) bool {
	return code == authCleartextPassword || code == authMD5Password || code == authSASL
}

// Answer answers a server's authentication request req (a whole 'R'
// message whose code Answers accepts) on rw, user being the name pgswitch
// logged in with. For SCRAM it runs the exchange up to and including the
// server's final message, whose signature it checks; for md5 it sends the
// response. The server's verdict (AuthenticationOk or an error) is left
// for the caller to read. If the server answers with an ErrorResponse
// during the exchange, Answer returns that message whole as serverErr.
func (p *PassThrough) Answer(rw io.ReadWriter, user string, req []byte) (serverErr []byte, err error) {
	md5Hash, key := p.known()
	code := AuthRequest(req)
	if !p.Answers(code) {
		return nil, fmt.Errorf("pass-through for user %q: not an authentication request pgswitch answers", user)
	}
	body := req[HeaderSize+4:]
	switch code {
	case authMD5Password:
		if md5Hash == "" || len(body) != 4 {
			return nil, fmt.Errorf("pass-through for user %q: the server asks for md5, and pgswitch has no md5 verifier for the user: %w", user, ErrNoPassThrough)
		}
		sum := md5.Sum(append([]byte(md5Hash[3:]), body...))
		return nil, sendServer(rw, &pgproto3.PasswordMessage{Password: "md5" + hex.EncodeToString(sum[:])})
	case authSASL:
		if !saslOffers(body, scramMechanism) {
			return nil, fmt.Errorf("pass-through for user %q: the server does not offer %s", user, scramMechanism)
		}
		if !key.Valid() {
			return nil, fmt.Errorf("pass-through for user %q: the server asks for SCRAM, and no client of the user has logged in with SCRAM yet: %w", user, ErrNoPassThrough)
		}
		return key.login(rw, user)
	}
	return nil, fmt.Errorf("pass-through for user %q: the server asks for a cleartext password, and pgswitch has only the user's verifier: %w", user, ErrNoPassThrough)
}

// login runs the client side of SCRAM-SHA-256 with the server on rw,
// proving k's ClientKey.
func (k ClientKey) login(rw io.ReadWriter, user string) ([]byte, error) {
	fail := func(format string, args ...any) ([]byte, error) {
		return nil, fmt.Errorf("pass-through for user %q: SCRAM: "+format, append([]any{user}, args...)...)
	}
	var nb [18]byte
	_, _ = rand.Read(nb[:])
	nonce := base64.StdEncoding.EncodeToString(nb[:])
	bare := "n=,r=" + nonce // the server takes the user from the startup packet
	const gs2Header = "n,,"
	if err := sendServer(rw, &pgproto3.SASLInitialResponse{AuthMechanism: scramMechanism, Data: []byte(gs2Header + bare)}); err != nil {
		return nil, err
	}
	msg, err := ReadServerAuth(rw)
	if err != nil || msg[0] == 'E' {
		return msg, err
	}
	if AuthRequest(msg) != authSASLContinue {
		return fail("expected SASLContinue, got message %q", msg[0])
	}
	serverFirst := string(msg[HeaderSize+4:])
	attrs := map[byte]string{}
	for _, a := range strings.Split(serverFirst, ",") {
		if isAttribute(a) {
			attrs[a[0]] = a[2:]
		}
	}
	serverNonce := attrs['r']
	if !strings.HasPrefix(serverNonce, nonce) || len(serverNonce) == len(nonce) {
		return fail("the server's nonce does not extend pgswitch's")
	}
	salt, err := base64.StdEncoding.DecodeString(attrs['s'])
	iterations, err2 := strconv.Atoi(attrs['i'])
	if err != nil || err2 != nil {
		return fail("malformed server-first-message")
	}
	if !hmac.Equal(salt, k.keys.salt) || iterations != k.keys.iterations {
		return fail("the server's verifier is not the one its clients proved (its salt or iteration count differ): the server and pgswitch must hold the same verifier")
	}
	withoutProof := "c=" + base64.StdEncoding.EncodeToString([]byte(gs2Header)) + ",r=" + serverNonce
	authMessage := bare + "," + serverFirst + "," + withoutProof
	proof := hmacSHA256(k.keys.storedKey, authMessage) // the ClientSignature, for now
	for i := range proof {
		proof[i] ^= k.key[i]
	}
	final := withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)
	if err := sendServer(rw, &pgproto3.SASLResponse{Data: []byte(final)}); err != nil {
		return nil, err
	}
	msg, err = ReadServerAuth(rw)
	if err != nil || msg[0] == 'E' {
		return msg, err
	}
	if AuthRequest(msg) != authSASLFinal {
		return fail("expected SASLFinal, got message %q", msg[0])
	}
	if !hmac.Equal(msg[HeaderSize+4:], []byte(k.keys.serverFinal(authMessage))) {
		return fail("the server's signature is wrong")
	}
	return nil, nil
}

// saslOffers reports whether the SASL mechanism list of an
// AuthenticationSASL body names mechanism.
func saslOffers(list []byte, mechanism string) bool {
	for _, m := range strings.Split(string(list), "\x00") {
		if m == mechanism {
			return true
		}
	}
	return false
}

// maxServerAuthMessage bounds a server message read during a login:
// authentication requests and errors are small.
const maxServerAuthMessage = 64 << 10

// ReadServerAuth reads one whole server message during a login (header
// and body), at most 64 KiB.
func ReadServerAuth(r io.Reader) ([]byte, error) {
	var hdr [HeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	h, err := ParseHeader(hdr[:], maxServerAuthMessage)
	if err != nil {
		return nil, fmt.Errorf("server message during login: %w", err)
	}
	msg := make([]byte, HeaderSize+h.Len)
	copy(msg, hdr[:])
	if _, err := io.ReadFull(r, msg[HeaderSize:]); err != nil {
		return nil, err
	}
	return msg, nil
}

// sendServer writes one message to a server.
func sendServer(w io.Writer, msg pgproto3.FrontendMessage) error {
	out, err := msg.Encode(nil)
	if err != nil {
		return err
	}
	_, err = w.Write(out)
	return err
}
