package config

import (
	"fmt"
	"math"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// decoder fills a Config from the YAML node tree in one pass, field by
// field along the structs' yaml tags, so that every error names the line
// of the value it concerns and the key's path (pool.size,
// databases.app.servers[0].port) in plain words. Unknown keys are errors.
//
// yaml.v3's own decoder would do the walk, but its errors speak Go ("field
// sise not found in type config.PoolSettings", "cannot unmarshal !!str
// `lots` into int") and know no key paths.
type decoder struct {
	r *report
}

var durationType = reflect.TypeFor[time.Duration]()

// wholeNumber is a number of seconds, even one too large for yaml.v3's int.
var wholeNumber = regexp.MustCompile(`^[-+]?[0-9]+$`)

// maxSeconds is the largest number of seconds a time.Duration holds.
const maxSeconds = int64(math.MaxInt64 / time.Second)

// value decodes n, the value of key, into v.
func (d decoder) value(n *yaml.Node, key string, v reflect.Value) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias // an anchor always comes before its aliases
	}
	d.r.nodes[key] = n
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		// As yaml.v3: an empty value leaves the zero value, nil for a
		// pointer, so that validation can say what is missing.
		v.Set(reflect.Zero(v.Type()))
		return
	}
	switch {
	case v.Type() == durationType:
		d.duration(n, key, v)
	case v.Kind() == reflect.Pointer:
		e := reflect.New(v.Type().Elem())
		d.value(n, key, e.Elem())
		v.Set(e)
	case v.Kind() == reflect.Struct:
		d.fields(n, key, v)
	case v.Kind() == reflect.Map:
		d.entries(n, key, v)
	case v.Kind() == reflect.Slice:
		d.list(n, key, v)
	default:
		d.scalar(n, key, v)
	}
}

// fields decodes a mapping into struct v, by the fields' yaml tags.
func (d decoder) fields(n *yaml.Node, key string, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.r.at(n, key, "must be a set of keys (key: value), not %s", describe(n))
		return
	}
	t := v.Type()
	index := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); name != "" && name != "-" {
			index[name] = i
		}
	}
	// A field tagged env:"whole" may be "${NAME}" (yaml.v3 refuses tag
	// options it does not know, so this one has its own key).
	env := func(i int) bool { return t.Field(i).Tag.Get("env") == "whole" }
	d.pairs(n, key, func(k, val *yaml.Node, sub string) {
		i, ok := index[k.Value]
		if !ok {
			meant := didYouMean(k.Value, index)
			if meant == "" {
				d.r.at(k, sub, "unknown key")
				return
			}
			d.r.at(k, sub, "unknown key; did you mean %s?", meant)
			// What the key it meant lacks is not a second error.
			d.r.failed[strings.TrimPrefix(key+"."+meant, ".")] = true
			return
		}
		if env(i) {
			val = d.fromEnv(val, sub)
		}
		d.value(val, sub, v.Field(i))
	})
}

// envRef is a value that is wholly a reference to an environment variable.
var envRef = regexp.MustCompile(`^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$`)

// fromEnv returns n, or, when n is "${NAME}", a plain scalar holding the
// value of the environment variable NAME at n's place (a key tagged
// env:"whole": values that differ per instance of a shared file, as
// peer_id).
func (d decoder) fromEnv(n *yaml.Node, key string) *yaml.Node {
	m := envRef.FindStringSubmatch(n.Value)
	if n.Kind != yaml.ScalarNode || m == nil {
		return n
	}
	val, ok := os.LookupEnv(m[1])
	if !ok {
		d.r.at(n, key, "environment variable %s is not set", m[1])
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: n.Line, Column: n.Column}
	}
	return &yaml.Node{Kind: yaml.ScalarNode, Value: strings.TrimSpace(val), Line: n.Line, Column: n.Column}
}

// entries decodes a mapping into map v, keyed by name (databases, users).
func (d decoder) entries(n *yaml.Node, key string, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.r.at(n, key, "must be a set of names (name: settings), not %s", describe(n))
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(v.Type()))
	}
	d.pairs(n, key, func(k, val *yaml.Node, sub string) {
		e := reflect.New(v.Type().Elem()).Elem()
		d.value(val, sub, e)
		name := reflect.New(v.Type().Key()).Elem()
		if name.Kind() == reflect.String {
			name.SetString(k.Value)
		} else if id, err := strconv.ParseInt(k.Value, 10, 64); err != nil || name.OverflowInt(id) {
			// Maps keyed by number: peers.
			d.r.at(k, sub, "%q is not a number", k.Value)
			return
		} else {
			name.SetInt(id)
		}
		v.SetMapIndex(name, e)
	})
}

// pairs calls each for every key of mapping n with its value and path:
// first the keys of mappings merged in with <<, then n's own, which win
// (as in yaml.v3). A key given twice is an error.
func (d decoder) pairs(n *yaml.Node, key string, each func(k, val *yaml.Node, sub string)) {
	var own [][2]*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!merge" {
			own = append(own, [2]*yaml.Node{k, val})
			continue
		}
		merged := []*yaml.Node{val}
		if val.Kind == yaml.SequenceNode {
			merged = val.Content
		}
		// Earlier mappings in a << list win over later ones.
		for j := len(merged) - 1; j >= 0; j-- {
			m := merged[j]
			if m.Kind == yaml.AliasNode {
				m = m.Alias
			}
			if m.Kind != yaml.MappingNode {
				d.r.at(merged[j], key, "<< merges only sets of keys, not %s", describe(m))
				continue
			}
			d.pairs(m, key, each)
		}
	}
	seen := make(map[string]int, len(own))
	for _, p := range own {
		k, val := p[0], p[1]
		if k.Kind != yaml.ScalarNode {
			d.r.at(k, key, "a key must be a plain name, not %s", describe(k))
			continue
		}
		sub := k.Value
		if key != "" {
			sub = key + "." + k.Value
		}
		if first, dup := seen[k.Value]; dup {
			d.r.at(k, sub, "is set twice (first on line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		each(k, val, sub)
	}
}

// list decodes a sequence into slice v.
func (d decoder) list(n *yaml.Node, key string, v reflect.Value) {
	if n.Kind == yaml.ScalarNode && v.Type() == patternsType {
		// Patterns: one may be written alone.
		s := reflect.MakeSlice(v.Type(), 1, 1)
		d.value(n, key+"[0]", s.Index(0))
		v.Set(s)
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.r.at(n, key, "must be a list (- item, or [a, b]), not %s", describe(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, c := range n.Content {
		d.value(c, fmt.Sprintf("%s[%d]", key, i), s.Index(i))
	}
	v.Set(s)
}

// scalar decodes a string, a whole number or a boolean.
func (d decoder) scalar(n *yaml.Node, key string, v reflect.Value) {
	if n.Kind != yaml.ScalarNode {
		d.r.at(n, key, "must be a single value, not %s", describe(n))
		return
	}
	switch v.Kind() {
	case reflect.String:
		// Any scalar is its text: a password may be 300 or true.
		v.SetString(n.Value)
	case reflect.Int, reflect.Int64:
		switch tag := n.ShortTag(); {
		case tag == "!!float":
			d.r.at(n, key, "%s is not a whole number", n.Value)
		case tag != "!!int":
			d.r.at(n, key, "%q is not a number", n.Value)
		case n.Decode(v.Addr().Interface()) != nil:
			d.r.at(n, key, "%s is too large", n.Value)
		}
	case reflect.Bool:
		// yaml.v3 also takes yes/no and on/off for a boolean.
		if n.Decode(v.Addr().Interface()) != nil {
			d.r.at(n, key, "%q is not true or false", n.Value)
		}
	default:
		panic("config: no YAML decoding for " + v.Type().String())
	}
}

// duration decodes a Go duration ("500ms", "1m30s") or a whole number of
// seconds, as in PgBouncer's configuration.
func (d decoder) duration(n *yaml.Node, key string, v reflect.Value) {
	if n.Kind != yaml.ScalarNode {
		d.r.at(n, key, "must be a duration such as 500ms or 1m30s, not %s", describe(n))
		return
	}
	if tag := n.ShortTag(); tag == "!!int" || tag == "!!float" && wholeNumber.MatchString(n.Value) {
		var secs int64
		if err := n.Decode(&secs); err != nil || secs > maxSeconds || secs < -maxSeconds {
			d.r.at(n, key, "%s seconds is too long (at most %d, some 292 years)", n.Value, maxSeconds)
			return
		}
		v.SetInt(int64(time.Duration(secs) * time.Second))
		return
	}
	dur, err := time.ParseDuration(n.Value)
	if n.ShortTag() != "!!str" || err != nil {
		d.r.at(n, key, "%q is not a duration: give a unit (500ms, 30s, 1m30s) or a whole number of seconds", n.Value)
		return
	}
	v.SetInt(int64(dur))
}

// describe names what a node holds, for an error message.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a set of keys"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "this"
}

// didYouMean suggests the known key an unknown one was probably meant to
// be: one a typo away, or one it is a part of (cert for cert_file).
func didYouMean(name string, known map[string]int) string {
	limit := 2 // a typo or two in a long key, one in a short one
	if len(name) <= 4 {
		limit = 1
	}
	best, bestDist := "", limit+1
	for k := range known {
		dist := editDistance(name, k)
		if strings.HasPrefix(k, name+"_") || strings.HasSuffix(k, "_"+name) {
			dist = limit
		}
		if dist < bestDist || dist == bestDist && k < best {
			best, bestDist = k, dist
		}
	}
	return best
}

// editDistance counts the insertions, deletions, substitutions and swaps of
// neighbours that turn a into b (optimal string alignment).
func editDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
