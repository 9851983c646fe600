package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Load reads, validates and completes the configuration in path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// Parse decodes YAML, rejects unknown keys, expands ${ENV} references, fills
// in defaults and validates. All validation errors are returned together.
func Parse(data []byte) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	secondsToDurations(&root)
	fixed, err := yaml.Marshal(&root)
	if err != nil {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	cfg := &Config{}
	dec := yaml.NewDecoder(bytes.NewReader(fixed))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	var errs []error
	cfg.expandEnv(&errs)
	cfg.setDefaults()
	cfg.validate(&errs)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return cfg, nil
}

// durationKeys are the YAML keys whose values are durations; a bare integer
// there means seconds, as in PgBouncer's configuration.
var durationKeys = map[string]bool{
	"client_login": true, "query_wait": true, "server_connect": true, "server_idle": true,
	"server_lifetime": true, "client_idle": true, "idle_transaction": true, "primary_wait": true, "shutdown": true, "pause": true,
	"max_replica_lag": true, "volatile_refresh": true, "causal_wait": true, "inter": true, "downinter": true, "timeout": true,
}

// maxSeconds is the largest bare integer a time.Duration can hold; a larger
// one is left as an integer for the decoder to reject.
const maxSeconds = int64(math.MaxInt64 / time.Second)

func secondsToDurations(n *yaml.Node) {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			secondsToDurations(c)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if durationKeys[k.Value] && v.Kind == yaml.ScalarNode && v.Tag == "!!int" {
				if secs, err := strconv.ParseInt(v.Value, 10, 64); err == nil && secs >= -maxSeconds && secs <= maxSeconds {
					v.Value = (time.Duration(secs) * time.Second).String()
					v.Tag = "!!str"
				}
			}
			secondsToDurations(v)
		}
	}
}

// expandEnv replaces ${NAME} in secrets. The value itself never appears in
// an error message.
func (c *Config) expandEnv(errs *[]error) {
	expand := func(key string, v *string) {
		if !strings.Contains(*v, "${") {
			return
		}
		// Only ${NAME} is a reference: a bare $ is common in passwords and
		// in SCRAM verifiers.
		var b strings.Builder
		rest := *v
		for {
			i := strings.Index(rest, "${")
			if i < 0 {
				break
			}
			j := strings.IndexByte(rest[i:], '}')
			if j < 0 {
				break
			}
			name := rest[i+2 : i+j]
			b.WriteString(rest[:i])
			val, ok := os.LookupEnv(name)
			if !ok {
				*errs = append(*errs, fmt.Errorf("%s: environment variable %s is not set", key, name))
			}
			b.WriteString(val)
			rest = rest[i+j+1:]
		}
		b.WriteString(rest)
		*v = b.String()
	}
	for name, u := range c.Users {
		if u == nil {
			continue
		}
		expand("users."+name+".password", &u.Password)
		expand("users."+name+".server_password", &u.ServerPassword)
	}
	expand("health.password", &c.Health.Password)
}
