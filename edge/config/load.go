package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Load reads, validates and completes the configuration in path. Relative
// file names in it (cert_dir, ca_file, access_log.path) are taken from the
// directory of path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	cfg.resolvePaths(dirOf(path))
	return cfg, nil
}

// Parse decodes YAML, rejects unknown keys, expands ${ENV} references, fills
// in defaults and validates. All validation errors are returned together.
func Parse(data []byte) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	var errs []error
	rewrite(&root, "", &errs)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	fixed, err := yaml.Marshal(&root)
	if err != nil {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	cfg := &Config{}
	dec := yaml.NewDecoder(bytes.NewReader(fixed))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("yaml: %s", nameLines(err.Error(), &root, fixed))
	}
	cfg.setDefaults()
	cfg.validate(&errs)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return cfg, nil
}

// durationKeys are the YAML keys whose values are durations; a bare integer
// there means seconds, as in pgswitch's configuration.
var durationKeys = map[string]bool{
	"connect": true, "client": true, "server": true, "http_request": true, "http_keep_alive": true,
	"queue": true, "inter": true, "downinter": true, "timeout": true, "shutdown_timeout": true,
}

// maxSeconds is the largest bare integer a time.Duration can hold; a larger
// one is left as an integer for the decoder to reject.
const maxSeconds = int64(math.MaxInt64 / time.Second)

// rewrite prepares the YAML tree for decoding: ${ENV} references are
// expanded in every scalar, bare integers under duration keys become
// seconds, and a bind written as a bare address becomes {addr: …}. key is
// the dotted path of n, for error messages.
func rewrite(n *yaml.Node, key string, errs *[]error) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			rewrite(c, key, errs)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			k := fmt.Sprintf("%s[%d]", key, i)
			if strings.HasSuffix(key, ".binds") && c.Kind == yaml.ScalarNode {
				addr := *c
				*c = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Content: []*yaml.Node{
					{Kind: yaml.ScalarNode, Tag: "!!str", Value: "addr"}, &addr,
				}}
			}
			rewrite(c, k, errs)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			path := k.Value
			if key != "" {
				path = key + "." + k.Value
			}
			rewrite(v, path, errs)
			if durationKeys[k.Value] && v.Kind == yaml.ScalarNode && v.Tag == "!!int" {
				if secs, err := strconv.ParseInt(v.Value, 10, 64); err == nil && secs >= -maxSeconds && secs <= maxSeconds {
					v.Value = (time.Duration(secs) * time.Second).String()
					v.Tag = "!!str"
				}
			}
		}
	case yaml.ScalarNode:
		if strings.Contains(n.Value, "${") {
			n.Value = expandEnv(n.Value, key, errs)
			if n.Style == 0 {
				// An unquoted reference takes the type of its value
				// (maxconn: ${MAXCONN} is an integer).
				n.Tag = ""
			}
		}
	}
}

// expandEnv replaces each ${NAME} in v. A missing variable is an error
// naming the key and the variable, never the value.
func expandEnv(v, key string, errs *[]error) string {
	var b strings.Builder
	for {
		i := strings.Index(v, "${")
		if i < 0 {
			break
		}
		j := strings.IndexByte(v[i:], '}')
		if j < 0 {
			break
		}
		name := v[i+2 : i+j]
		b.WriteString(v[:i])
		val, ok := os.LookupEnv(name)
		if !ok {
			*errs = append(*errs, fmt.Errorf("%s: environment variable %s is not set", key, name))
		}
		b.WriteString(val)
		v = v[i+j+1:]
	}
	b.WriteString(v)
	return b.String()
}

var (
	lineRe  = regexp.MustCompile(`line (\d+): `)
	valueRe = regexp.MustCompile("`([^`]*)`")
)

// nameLines rewrites the decoder's "line N: " (N a line of the rewritten
// document) into the key and the line of the file as written. Where a line
// holds several keys (a flow mapping), the key whose value the message
// quotes is named.
func nameLines(msg string, orig *yaml.Node, fixed []byte) string {
	var again yaml.Node
	if yaml.Unmarshal(fixed, &again) != nil {
		return msg
	}
	type place struct {
		key, value string
		line       int
	}
	where := map[int][]place{}
	var walk func(o, n *yaml.Node, key string)
	walk = func(o, n *yaml.Node, key string) {
		if o == nil || n == nil || len(o.Content) != len(n.Content) {
			return
		}
		if key != "" {
			where[n.Line] = append(where[n.Line], place{key, n.Value, o.Line})
		}
		for i := range n.Content {
			child := key
			switch n.Kind {
			case yaml.MappingNode:
				if i%2 == 0 {
					continue
				}
				child = n.Content[i-1].Value
				if key != "" {
					child = key + "." + child
				}
			case yaml.SequenceNode:
				child = fmt.Sprintf("%s[%d]", key, i)
			}
			walk(o.Content[i], n.Content[i], child)
		}
	}
	walk(orig, &again, "")
	lines := strings.Split(msg, "\n")
	for i, l := range lines {
		m := lineRe.FindStringSubmatchIndex(l)
		if m == nil {
			continue
		}
		n, _ := strconv.Atoi(l[m[2]:m[3]])
		places := where[n]
		if len(places) == 0 {
			continue
		}
		pl := places[len(places)-1]
		if v := valueRe.FindStringSubmatch(l); v != nil {
			for _, c := range places {
				if c.value == v[1] {
					pl = c
				}
			}
		}
		lines[i] = l[:m[0]] + fmt.Sprintf("%s (line %d): ", pl.key, pl.line) + l[m[1]:]
	}
	return strings.Join(lines, "\n")
}

func dirOf(path string) string {
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		return path[:i+1]
	}
	return ""
}

// resolvePaths makes relative file names relative to the configuration
// file's directory, so that pgswitch-edge finds them whatever its working
// directory.
func (c *Config) resolvePaths(dir string) {
	if dir == "" {
		return
	}
	abs := func(p *string) {
		if *p != "" && !strings.HasPrefix(*p, "/") {
			*p = dir + *p
		}
	}
	switch c.AccessLog.Path {
	case "stderr", "stdout", "off":
	default:
		abs(&c.AccessLog.Path)
	}
	for _, l := range c.Listens {
		for _, b := range l.Binds {
			if b.TLS != nil {
				abs(&b.TLS.CertDir)
			}
		}
		for _, s := range l.Servers {
			if s.TLS != nil {
				abs(&s.TLS.CAFile)
			}
		}
	}
}
