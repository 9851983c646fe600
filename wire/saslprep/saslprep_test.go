package saslprep

import (
	"errors"
	"testing"

	"golang.org/x/text/secure/precis"
)

// TestPrepareRFC4013 runs the examples of RFC 4013 §3, then PostgreSQL's
// own behaviour where it departs from the RFC's letter.
func TestPrepareRFC4013(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr error
	}{
		// RFC 4013 §3, examples 1 to 7.
		{"soft hyphen mapped to nothing", "I\u00adX", "IX", nil},
		{"no transformation", "user", "user", nil},
		{"case preserved", "USER", "USER", nil},
		{"NFKC of U+00AA", "\u00aa", "a", nil},
		{"NFKC of U+2168", "\u2168", "IX", nil},
		// Example 6 is an error in the RFC; PostgreSQL returns ASCII as is.
		{"ASCII control, as PostgreSQL", "\u0007", "\u0007", nil},
		{"bidirectional check", "\u0627\u0031", "", ErrProhibited},

		// Mapping.
		{"non-ASCII spaces become spaces", "a\u00a0b\u3000c\u2000d", "a b c d", nil},
		{"U+200B is a space, as in PostgreSQL", "a\u200bb", "a b", nil},
		{"U+1806 mapped to nothing, as in PostgreSQL", "a\u1806b\u00e9", "ab\u00e9", nil},
		{"variation selectors and BOM mapped to nothing", "x\ufe0f\ufeffy\u00e9", "xy\u00e9", nil},
		{"nothing left after mapping", "\u00ad\u200d", "", ErrProhibited},

		// Normalization.
		{"full-width letters", "\uff50\uff57", "pw", nil},
		{"ligature", "\ufb01x", "fix", nil},
		{"decomposed accent composed", "pa\u0301ss", "p\u00e1ss", nil},
		{"Roman numeral in a longer password", "\u2168-secret", "IX-secret", nil},

		// Prohibited output (C.2 to C.9), on the mapped input.
		{"ASCII control among non-ASCII", "\u00e9\u0007", "", ErrProhibited},
		{"non-ASCII control", "\u00e9\u0085", "", ErrProhibited},
		{"private use", "\ue000\u00e9", "", ErrProhibited},
		{"non-character", "\u00e9\ufdd0", "", ErrProhibited},
		{"inappropriate for plain text", "\u00e9\ufffd", "", ErrProhibited},
		{"ideographic description", "\u2ff0\u00e9", "", ErrProhibited},
		{"tag character", "\u00e9\U000E0041", "", ErrProhibited},
		{"line separator", "\u00e9\u2028", "", ErrProhibited},
		// U+0340 normalizes to U+0300, which is allowed; PostgreSQL checks
		// before normalizing and refuses it.
		{"change display property, checked before NFKC", "e\u0340\u00e9", "", ErrProhibited},

		// Unassigned in Unicode 3.2.
		{"unassigned in 3.2", "\u2168\u0221", "", ErrProhibited},
		{"assigned later with a compatibility mapping", "\U0001F100\u00e9", "", ErrProhibited},

		// Bidirectional rules.
		{"right-to-left with a left-to-right letter", "\u2168\u05d0", "", ErrProhibited},
		{"right-to-left not last", "\u05d0\u05d11", "", ErrProhibited},
		{"right-to-left first and last, digits between", "\u05d01\u05d1", "\u05d01\u05d1", nil},
		{"right-to-left presentation form normalized", "\ufb2a\u05d0", "\u05e9\u05c1\u05d0", nil},

		// Encoding.
		{"not UTF-8", "\xff\u00e9", "", ErrInvalidUTF8},
		{"surrogate in UTF-8", "\xed\xa0\x80\u00e9", "", ErrInvalidUTF8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Prepare(tt.in)
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Fatalf("Prepare(%+q): got %+q, %v; want %+q, %v", tt.in, got, err, tt.want, tt.wantErr)
			}
			wantPassword := tt.want
			if tt.wantErr != nil {
				wantPassword = tt.in
			}
			if got := Password(tt.in); got != wantPassword {
				t.Errorf("Password(%+q): got %+q, want %+q", tt.in, got, wantPassword)
			}
		})
	}
}

// TestPreparedPasswordsSurvivePgconn checks what pgswitch relies on when it
// hands a prepared password to pgconn for a server login: pgconn's own
// normalization (PRECIS OpaqueString, or the raw bytes when that fails or a
// character is unassigned in Unicode 3.2) leaves a prepared password as it
// is. It tries every code point of the Basic Multilingual Plane and a few
// beyond, between letters. (Prepare itself is not idempotent: U+2135 ALEF
// SYMBOL, a left-to-right character, normalizes to a right-to-left one.)
func TestPreparedPasswordsSurvivePgconn(t *testing.T) {
	check := func(r rune) {
		out, err := Prepare("a" + string(r) + "\u00e9")
		if err != nil {
			return
		}
		if again, err := precis.OpaqueString.String(out); err == nil && again != out {
			t.Errorf("U+%04X: prepared %+q, which OpaqueString changes to %+q", r, out, again)
		}
	}
	for r := rune(0x80); r <= 0xffff; r++ {
		check(r)
	}
	for _, r := range []rune{0x10400, 0x1D400, 0x1D7CE, 0x20000, 0x2F800} {
		check(r)
	}
}
