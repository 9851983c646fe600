package config

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// An Error is one thing wrong in a configuration: where, which key, what.
// Load and Parse return every Error of a file together (errors.Join), in
// the order of their lines.
type Error struct {
	File string // the file Load read; empty for Parse
	Line int    // 1-based line of the key's value; 0 when the key is not in the file
	Key  string // the key's path: pool.size, databases.app.servers[0].port
	Msg  string // what is wrong, in words

	node *yaml.Node // the node the error is about, to report it once
	rest string     // the part of Key below node (a key missing from node)
}

// Error reads "pgswitch.yaml:11: pool.size: "lots" is not a number".
func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		b.WriteString(e.File + ": ")
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// report gathers a configuration's errors. It knows where every key of the
// file is, so that a check made after decoding still names the right line,
// and it reports one error per cause: a key whose value could not be read
// (or names an unset variable) is not checked again, nor is anything
// below it, and a value reached through several aliases is reported once.
type report struct {
	file   string
	nodes  map[string]*yaml.Node // key path → its value, for every key in the file
	failed map[string]bool       // keys already reported
	errs   []*Error
}

func newReport(file string) *report {
	return &report{file: file, nodes: map[string]*yaml.Node{}, failed: map[string]bool{}}
}

// at reports what is wrong with node n, the value (or the key) of key.
func (r *report) at(n *yaml.Node, key, format string, args ...any) {
	r.failed[key] = true
	r.add(&Error{Key: key, Msg: fmt.Sprintf(format, args...), Line: n.Line, node: n})
}

// bad reports what is wrong with key after decoding, at the line of the
// key's value, or of the nearest key above it when it is not in the file.
// Nothing is said of a key already reported, or below one.
func (r *report) bad(key, format string, args ...any) {
	if !r.ok(key) {
		return
	}
	r.failed[key] = true
	e := &Error{Key: key, Msg: fmt.Sprintf(format, args...)}
	for at := key; at != ""; at = parentKey(at) {
		if n := r.nodes[at]; n != nil {
			e.node, e.Line, e.rest = n, n.Line, key[len(at):]
			break
		}
	}
	r.add(e)
}

func (r *report) add(e *Error) {
	if e.node != nil && slices.ContainsFunc(r.errs, func(o *Error) bool {
		return o.node == e.node && o.rest == e.rest && o.Msg == e.Msg
	}) {
		return
	}
	e.File = r.file
	r.errs = append(r.errs, e)
}

// ok says that neither key nor any key above it has been reported.
func (r *report) ok(key string) bool {
	for at := key; at != ""; at = parentKey(at) {
		if r.failed[at] {
			return false
		}
	}
	return true
}

// set says that key is in the file: a value it does not hold was
// inherited from another key, which answers for it.
func (r *report) set(key string) bool {
	return r.nodes[key] != nil
}

// err returns the errors in the order of their lines, those of keys not in
// the file last; nil when there are none.
func (r *report) err() error {
	if len(r.errs) == 0 {
		return nil
	}
	slices.SortStableFunc(r.errs, func(a, b *Error) int {
		switch {
		case a.Line == b.Line:
			return 0
		case a.Line == 0:
			return 1
		case b.Line == 0:
			return -1
		}
		return a.Line - b.Line
	})
	errs := make([]error, len(r.errs))
	for i, e := range r.errs {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// parentKey is the key above key: pool for pool.size, databases.app.servers
// for databases.app.servers[0], "" for a top-level key.
func parentKey(key string) string {
	if i := strings.LastIndexAny(key, ".["); i >= 0 {
		return key[:i]
	}
	return ""
}

// yamlLine finds "line N: " in yaml.v3's syntax errors.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// syntax reports err, yaml.v3's complaint about text that is not YAML.
func (r *report) syntax(err error) {
	e := &Error{Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		e.Msg = err.Error()[len(m[0]):]
	}
	e.Msg = "not valid YAML: " + e.Msg
	r.add(e)
}
