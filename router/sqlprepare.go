// SQL-level PREPARE / EXECUTE / DEALLOCATE under transaction pooling.

package router

import (
	"github.com/pgswitch/pgswitch/wire"
	"strings"

	"github.com/pgswitch/pgswitch/pool"
	"github.com/pgswitch/pgswitch/router/classify"
)

// sqlStmt is a statement the client prepared with SQL PREPARE.
type sqlStmt struct {
	text string // the whole PREPARE statement
	res  classify.Result
}

// prepareSQL makes c ready for the client's PREPARE or EXECUTE at
// (*s.out)[start:]: SQL-level names are the client's own on the server, so
// another client's statement of that name is dropped first, and a statement
// the client prepared on another connection is prepared here. It returns
// where the message starts now.
func (s *Session) prepareSQL(c *pool.Conn, start int) (int, error) {
	text := s.unitText('Q', (*s.out)[start:])
	kw := firstWord(text) // an EXECUTE carries its PREPARE's classification
	name, ok := sqlName(text, kw)
	st, known := s.sqlPrep[name]
	if !ok || !known {
		return start, nil
	}
	have := c.SQLNames()
	had, exists := have[name]
	var q string
	switch {
	case kw == "PREPARE" && exists:
		q = "DEALLOCATE " + quoteIdent(name)
	case kw == "EXECUTE" && had != st.text:
		if exists {
			q = "DEALLOCATE " + quoteIdent(name) + ";"
		}
		q += st.text
	}
	if q != "" {
		if err := c.Send(s.client, 'Q', pool.Swallow, ""); err != nil {
			return start, err
		}
		pre := wire.AppendQuery(nil, q)
		s.insertAt(start, pre)
		start += len(pre)
		c.SetUnnamed(nil, 0)
	}
	have[name] = st.text
	return start, nil
}

// sqlName returns the statement name that follows keyword in text (after
// an optional PREPARE in DEALLOCATE PREPARE name), folded as PostgreSQL
// folds identifiers; "all" for DEALLOCATE ALL.
func sqlName(text, keyword string) (string, bool) {
	text = strings.TrimLeft(text, " \t\r\n")
	for strings.HasPrefix(text, "/*") || strings.HasPrefix(text, "--") {
		end := "\n"
		if text[1] == '*' {
			end = "*/"
		}
		i := strings.Index(text, end)
		if i < 0 {
			return "", false
		}
		text = strings.TrimLeft(text[i+len(end):], " \t\r\n")
	}
	if len(text) < len(keyword) || !strings.EqualFold(text[:len(keyword)], keyword) {
		return "", false
	}
	text = strings.TrimLeft(text[len(keyword):], " \t\r\n")
	if keyword == "DEALLOCATE" && len(text) > 7 && strings.EqualFold(text[:7], "PREPARE") && strings.ContainsAny(text[7:8], " \t\r\n") {
		text = strings.TrimLeft(text[7:], " \t\r\n")
	}
	if strings.HasPrefix(text, `"`) {
		var b strings.Builder
		for i := 1; i < len(text); i++ {
			if text[i] == '"' {
				if i+1 < len(text) && text[i+1] == '"' {
					b.WriteByte('"')
					i++
					continue
				}
				return b.String(), b.Len() > 0
			}
			b.WriteByte(text[i])
		}
		return "", false
	}
	end := strings.IndexFunc(text, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '$')
	})
	if end < 0 {
		end = len(text)
	}
	return strings.ToLower(text[:end]), end > 0
}
