package admin

import (
	"fmt"
	"sort"

	"go.yaml.in/yaml/v3"

	"github.com/pgswitch/pgswitch/config"
	"github.com/pgswitch/pgswitch/router"
)

// minimalConfig is the smallest valid configuration: its values are the defaults.
const minimalConfig = "databases: {_: {servers: [{host: 127.0.0.1}]}}\nusers: {_: {password: _}}\n"

// unchangeable keys need a restart: RELOAD does not apply them.
var unchangeable = map[string]bool{"listen": true, "metrics_listen": true,
	"unix_socket_dir": true, "unix_socket_mode": true, "unix_socket_owner": true, "unix_socket_group": true}

// showConfig lists the configuration in force, secrets redacted, one key per
// row as PgBouncer's SHOW CONFIG: key, value, default, changeable.
func (con *Console) showConfig(snap *router.Snapshot) *table {
	t := newTable(textCol("key"), textCol("value"), textCol("default"), textCol("changeable"))
	values := flatConfig(snap.Config)
	defaults := map[string]string{}
	if def, err := config.Parse([]byte(minimalConfig)); err == nil {
		defaults = flatConfig(def)
	}
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		changeable := "yes"
		if unchangeable[k] {
			changeable = "no"
		}
		var def any
		if d, ok := defaults[k]; ok {
			def = d
		}
		t.add(k, values[k], def, changeable)
	}
	return t
}

// flatConfig returns cfg, redacted, as dotted keys and YAML scalar values.
func flatConfig(cfg *config.Config) map[string]string {
	out := map[string]string{}
	data, err := yaml.Marshal(cfg.Redacted())
	if err != nil {
		return out
	}
	var tree any
	if err := yaml.Unmarshal(data, &tree); err != nil {
		return out
	}
	flatten("", tree, out)
	return out
}

func flatten(prefix string, v any, out map[string]string) {
	join := func(k string) string {
		if prefix == "" {
			return k
		}
		return prefix + "." + k
	}
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			flatten(join(k), x, out)
		}
	case map[any]any: // keyed by number: peers
		for k, x := range v {
			flatten(join(fmt.Sprint(k)), x, out)
		}
	case []any:
		if len(v) == 0 {
			out[prefix] = "[]"
		}
		for i, x := range v {
			flatten(fmt.Sprintf("%s[%d]", prefix, i), x, out)
		}
	case nil:
		out[prefix] = ""
	default:
		out[prefix] = fmt.Sprint(v)
	}
}
