package config

import (
	"fmt"
	"os"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Load reads, validates and completes the configuration in path. Its
// errors name the file, the line and the key: "pgswitch.yaml:11:
// pool.size: "lots" is not a number".
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return parse(data, path)
}

// Parse decodes YAML, rejects unknown keys, expands ${ENV} references, fills
// in defaults and validates. All errors are returned together, each an
// *Error, one per cause.
func Parse(data []byte) (*Config, error) {
	return parse(data, "")
}

func parse(data []byte, file string) (*Config, error) {
	r := newReport(file)
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		r.syntax(err)
		return nil, r.err()
	}
	cfg := &Config{}
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		decoder{r}.value(root.Content[0], "", reflect.ValueOf(cfg).Elem())
	}
	cfg.expandEnv(r)
	cfg.setDefaults(r)
	cfg.validate(r)
	if err := r.err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// expandEnv replaces ${NAME} in secrets. The value itself never appears in
// an error message.
func (c *Config) expandEnv(r *report) {
	expand := func(key string, v *string) {
		if !strings.Contains(*v, "${") {
			return
		}
		// Only ${NAME} is a reference: a bare $ is common in passwords and
		// in SCRAM verifiers.
		var b strings.Builder
		var unset []string
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
				unset = append(unset, name)
			}
			b.WriteString(val)
			rest = rest[i+j+1:]
		}
		b.WriteString(rest)
		*v = b.String()
		switch len(unset) {
		case 0:
		case 1:
			r.bad(key, "environment variable %s is not set", unset[0])
		default:
			r.bad(key, "environment variables %s are not set", strings.Join(unset, ", "))
		}
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
