package saslprep

import (
	"errors"
	"unicode/utf8"

	"github.com/xdg-go/stringprep"
	"golang.org/x/text/unicode/norm"
)

// Errors of Prepare, as PostgreSQL's pg_saslprep tells them apart. They
// never name the character at fault: it is part of a password.
var (
	ErrInvalidUTF8 = errors.New("saslprep: not valid UTF-8")
	ErrProhibited  = errors.New("saslprep: prohibited character, unassigned code point, bidirectional text rule broken, or nothing left after mapping")
)

// Password returns the string PostgreSQL derives SCRAM keys from for the
// password p: Prepare's result, or p itself where Prepare fails (PostgreSQL
// then uses the raw bytes, for passwords in other encodings or with
// characters SASLprep prohibits).
func Password(p string) string {
	if out, err := Prepare(p); err == nil {
		return out
	}
	return p
}

// Prepare applies SASLprep (RFC 4013) to s as PostgreSQL's pg_saslprep
// does, which differs from the RFC's letter in three ways that decide which
// passwords work, so this follows PostgreSQL:
//
//   - an ASCII string is returned as it is, control characters included;
//   - U+200B ZERO WIDTH SPACE, in both table C.1.2 (mapped to a space) and
//     table B.1 (mapped to nothing), becomes a space, and U+1806 MONGOLIAN
//     TODO SOFT HYPHEN is mapped to nothing as RFC 3454's table B.1 has it
//     (the stringprep package follows an erratum that removed it);
//   - prohibited and unassigned characters and the bidirectional rules are
//     checked on the mapped string before NFKC normalization, not after.
//
// Checking before normalization also makes the result independent of the
// Unicode version of the NFKC tables: every character unassigned in Unicode
// 3.2 is refused before it could be normalized.
func Prepare(s string) (string, error) {
	if isASCII(s) {
		return s, nil
	}
	if !utf8.ValidString(s) {
		return "", ErrInvalidUTF8
	}
	mapped := make([]rune, 0, len(s))
	for _, r := range s {
		switch {
		case stringprep.TableC1_2.Contains(r): // non-ASCII spaces, U+200B first
			mapped = append(mapped, ' ')
		case r == 0x1806:
		default:
			if _, toNothing := stringprep.TableB1.Map(r); !toNothing {
				mapped = append(mapped, r)
			}
		}
	}
	if len(mapped) == 0 {
		return "", ErrProhibited // PostgreSQL refuses an empty password
	}
	randAL := false
	for _, r := range mapped {
		if prohibited(r) || stringprep.TableA1.Contains(r) {
			return "", ErrProhibited
		}
		randAL = randAL || stringprep.TableD1.Contains(r)
	}
	if randAL {
		// RFC 3454 §6: no left-to-right character, and a right-to-left one
		// first and last.
		for _, r := range mapped {
			if stringprep.TableD2.Contains(r) {
				return "", ErrProhibited
			}
		}
		if !stringprep.TableD1.Contains(mapped[0]) || !stringprep.TableD1.Contains(mapped[len(mapped)-1]) {
			return "", ErrProhibited
		}
	}
	return norm.NFKC.String(string(mapped)), nil
}

// prohibitedTables are RFC 4013 §2.3's prohibited output (C.1.2 to C.9).
var prohibitedTables = []stringprep.Set{
	stringprep.TableC1_2, stringprep.TableC2_1, stringprep.TableC2_2, stringprep.TableC3,
	stringprep.TableC4, stringprep.TableC5, stringprep.TableC6, stringprep.TableC7,
	stringprep.TableC8, stringprep.TableC9,
}

func prohibited(r rune) bool {
	for _, t := range prohibitedTables {
		if t.Contains(r) {
			return true
		}
	}
	return false
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
