package admin

import (
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Type OIDs of result columns.
const (
	oidText   = 25
	oidInt8   = 20
	oidFloat8 = 701
)

// column is one column of a result.
type column struct {
	name string
	oid  uint32
}

func textCol(name string) column  { return column{name, oidText} }
func intCol(name string) column   { return column{name, oidInt8} }
func floatCol(name string) column { return column{name, oidFloat8} }

// table is a command's result: columns, then rows of values (string, int,
// int64, uint64, float64, bool, time.Time or nil for NULL).
type table struct {
	cols []column
	rows [][]any
}

func newTable(cols ...column) *table { return &table{cols: cols} }

func (t *table) add(values ...any) {
	if len(values) != len(t.cols) {
		panic("admin: row has " + strconv.Itoa(len(values)) + " values for " + strconv.Itoa(len(t.cols)) + " columns")
	}
	t.rows = append(t.rows, values)
}

// messages encodes t as RowDescription, DataRows and CommandComplete.
func (t *table) messages(tag string) []pgproto3.BackendMessage {
	fields := make([]pgproto3.FieldDescription, len(t.cols))
	for i, c := range t.cols {
		size := int16(-1)
		switch c.oid {
		case oidInt8, oidFloat8:
			size = 8
		}
		fields[i] = pgproto3.FieldDescription{Name: []byte(c.name), DataTypeOID: c.oid, DataTypeSize: size, TypeModifier: -1}
	}
	msgs := []pgproto3.BackendMessage{&pgproto3.RowDescription{Fields: fields}}
	for _, row := range t.rows {
		values := make([][]byte, len(row))
		for i, v := range row {
			values[i] = encode(v)
		}
		msgs = append(msgs, &pgproto3.DataRow{Values: values})
	}
	return append(msgs, &pgproto3.CommandComplete{CommandTag: []byte(tag)})
}

// encode returns v in PostgreSQL's text format; nil is NULL.
func encode(v any) []byte {
	switch v := v.(type) {
	case nil:
		return nil
	case string:
		return []byte(v)
	case int:
		return strconv.AppendInt(nil, int64(v), 10)
	case int64:
		return strconv.AppendInt(nil, v, 10)
	case uint64:
		return strconv.AppendUint(nil, v, 10)
	case uint32:
		return strconv.AppendUint(nil, uint64(v), 10)
	case float64:
		return strconv.AppendFloat(nil, v, 'f', -1, 64)
	case bool:
		if v {
			return []byte("1")
		}
		return []byte("0")
	case time.Time:
		if v.IsZero() {
			return nil
		}
		return []byte(v.UTC().Format("2006-01-02 15:04:05 MST"))
	case time.Duration:
		return []byte(v.String())
	}
	panic("admin: cannot encode a value of this type")
}
