package config

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// example is the documented example configuration at the repository root.
const example = "../pgswitch.yaml"

func TestExampleLoads(t *testing.T) {
	t.Setenv("PGSWITCH_APP_PASSWORD", "example-secret")
	cfg, err := Load(example)
	if err != nil {
		t.Fatalf("Load(%s): %v", example, err)
	}
	if got, want := cfg.Listen, "127.0.0.1:6432"; got != want {
		t.Errorf("listen: got %q, want %q", got, want)
	}
	if got := cfg.Users["app"].Password; got != "example-secret" {
		t.Errorf("users.app.password: got %q, want the value of PGSWITCH_APP_PASSWORD", got)
	}
	if cfg.Health.User != "app" || cfg.Health.Password != "example-secret" {
		t.Errorf("health: got user %q password %q, want app and the value of PGSWITCH_APP_PASSWORD",
			cfg.Health.User, cfg.Health.Password)
	}

	type server struct {
		addr    string
		role    Role
		maxconn int
		backup  bool
		inter   time.Duration
	}
	wantServers := []server{
		{"127.0.0.1:5432", RolePrimary, 0, false, time.Second},
		{"127.0.0.1:5433", RoleReplica, 50, false, time.Second},
		{"127.0.0.1:5434", RoleReplica, 0, false, 2 * time.Second},
	}
	for _, want := range []struct {
		name  string
		route Route
	}{
		{"app", RouteAuto},
		{"app_rw", RoutePrimary},
		{"app_ro", RouteReplica},
	} {
		db := cfg.Databases[want.name]
		if db == nil {
			t.Errorf("databases.%s: missing", want.name)
			continue
		}
		if db.Route != want.route || db.DBName != "app" {
			t.Errorf("databases.%s: got route %q dbname %q, want %q and app", want.name, db.Route, db.DBName, want.route)
		}
		if len(db.Servers) != len(wantServers) {
			t.Errorf("databases.%s: got %d servers, want %d", want.name, len(db.Servers), len(wantServers))
			continue
		}
		for i, s := range db.Servers {
			got := server{s.Addr(), s.Role, s.MaxConn, s.Backup, s.Inter}
			if got != wantServers[i] {
				t.Errorf("databases.%s.servers[%d]: got %+v, want %+v", want.name, i, got, wantServers[i])
			}
		}
	}
	if got, want := len(cfg.Databases), 3; got != want {
		t.Errorf("databases: got %d, want %d", got, want)
	}
}

// The example's header says check-config needs the variable; keep that true.
func TestExampleNeedsPassword(t *testing.T) {
	t.Setenv("PGSWITCH_APP_PASSWORD", "")
	os.Unsetenv("PGSWITCH_APP_PASSWORD")
	_, err := Load(example)
	if err == nil || !strings.Contains(err.Error(), "PGSWITCH_APP_PASSWORD is not set") {
		t.Errorf("got %v, want an error naming PGSWITCH_APP_PASSWORD", err)
	}
}

// Every key pgswitch reads appears in the example, set or commented out, so
// a new key cannot be added without documenting it there.
func TestExampleDocumentsEveryKey(t *testing.T) {
	data, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	keys := yamlKeys(reflect.TypeFor[Config]())
	if len(keys) < 60 {
		t.Fatalf("yamlKeys found %d keys, want all of them (more than 60): %v", len(keys), keys)
	}
	for _, key := range keys {
		re := regexp.MustCompile(`(?m)^[ \t#-]*` + regexp.QuoteMeta(key) + `:`)
		if !re.Match(data) {
			t.Errorf("%s does not mention the key %q", example, key)
		}
	}
}

// yamlKeys lists the YAML keys of t and of the types it contains.
func yamlKeys(t reflect.Type) []string {
	var keys []string
	seen := map[reflect.Type]bool{}
	var walk func(reflect.Type)
	walk = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || seen[t] {
			return
		}
		seen[t] = true
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			keys = append(keys, name)
			walk(f.Type)
		}
	}
	walk(t)
	return keys
}
