package wire

import "strings"

// QuoteConnValue quotes a value for a libpq keyword/value connection
// string, which is how pgswitch hands server addresses and names to pgconn.
func QuoteConnValue(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
