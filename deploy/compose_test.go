package deploy

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/pgswitch/pgswitch/config"
)

// root is the repository's root, where docker-compose.yml is.
const root = ".."

// compose is the part of a compose file this test checks.
type compose struct {
	Services map[string]struct {
		Image string `yaml:"image"`
		Build *struct {
			Context    string `yaml:"context"`
			Dockerfile string `yaml:"dockerfile"`
		} `yaml:"build"`
		Volumes     []string  `yaml:"volumes"`
		NetworkMode string    `yaml:"network_mode"`
		DependsOn   yaml.Node `yaml:"depends_on"`
	} `yaml:"services"`
	Volumes map[string]any `yaml:"volumes"`
}

func loadCompose(t *testing.T) *compose {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var c compose
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return &c
}

// TestComposeConfig asks docker compose (the plugin, else the Python
// docker-compose) to validate the file. No engine is needed for that. CI
// installs docker-compose (.ci/run); elsewhere a machine without either
// only runs the other tests of this file.
func TestComposeConfig(t *testing.T) {
	var cmd *exec.Cmd
	switch {
	case exec.Command("docker", "compose", "version").Run() == nil:
		cmd = exec.Command("docker", "compose", "-f", "docker-compose.yml", "config", "-q")
	default:
		if path, err := exec.LookPath("docker-compose"); err == nil {
			cmd = exec.Command(path, "-f", "docker-compose.yml", "config", "-q")
		}
	}
	if cmd == nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("neither `docker compose` nor docker-compose is installed (.ci/run installs docker-compose)")
		}
		t.Skip("neither `docker compose` nor docker-compose is installed")
	}
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
}

// TestComposeFilesExist: everything the file mounts or builds is in the
// repository, every COPY of its Dockerfiles finds its source, and the
// services it names exist.
func TestComposeFilesExist(t *testing.T) {
	c := loadCompose(t)
	for _, want := range []string{"postgres-primary", "postgres-replica", "pgswitch", "edge", "app"} {
		if _, ok := c.Services[want]; !ok {
			t.Errorf("service %s is missing from the sandwich", want)
		}
	}
	for name, s := range c.Services {
		if (s.Image == "") == (s.Build == nil) {
			t.Errorf("%s: needs exactly one of image and build", name)
		}
		if s.Build != nil {
			ctx := filepath.Join(root, s.Build.Context)
			dockerfile := filepath.Join(ctx, s.Build.Dockerfile)
			mustExist(t, name+" build context", ctx)
			mustExist(t, name+" dockerfile", dockerfile)
			checkCopies(t, name, dockerfile, ctx)
		}
		for _, v := range s.Volumes {
			src, _, ok := strings.Cut(v, ":")
			if !ok {
				t.Errorf("%s: volume %q has no target", name, v)
				continue
			}
			if strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") {
				mustExist(t, name+" mount", filepath.Join(root, src))
			} else if _, ok := c.Volumes[src]; !ok {
				t.Errorf("%s: named volume %s is not declared", name, src)
			}
		}
		if other, ok := strings.CutPrefix(s.NetworkMode, "service:"); ok {
			if _, exists := c.Services[other]; !exists {
				t.Errorf("%s: network_mode names unknown service %s", name, other)
			}
		}
		for _, dep := range dependsOn(&s.DependsOn) {
			if _, exists := c.Services[dep]; !exists {
				t.Errorf("%s: depends_on unknown service %s", name, dep)
			}
		}
	}
}

// dependsOn lists the services of a depends_on, short or long form.
func dependsOn(n *yaml.Node) []string {
	var out []string
	switch n.Kind {
	case yaml.SequenceNode:
		for _, c := range n.Content {
			out = append(out, c.Value)
		}
	case yaml.MappingNode:
		for i := 0; i < len(n.Content); i += 2 {
			out = append(out, n.Content[i].Value)
		}
	}
	return out
}

func mustExist(t *testing.T, what, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Errorf("%s: %v", what, err)
	}
}

// checkCopies checks the sources of a Dockerfile's COPY lines that copy
// from the build context.
func checkCopies(t *testing.T, service, dockerfile, ctx string) {
	t.Helper()
	f, err := os.Open(dockerfile)
	if err != nil {
		return // reported by mustExist
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 || !strings.EqualFold(fields[0], "COPY") {
			continue
		}
		if slices.ContainsFunc(fields, func(s string) bool { return strings.HasPrefix(s, "--from=") }) {
			continue
		}
		for _, src := range fields[1 : len(fields)-1] {
			if strings.HasPrefix(src, "--") {
				continue
			}
			mustExist(t, service+" COPY "+src, filepath.Join(ctx, src))
		}
	}
}

// TestPgswitchConfigLoads: the pgswitch configuration the sandwich mounts is
// valid for pgswitch itself.
func TestPgswitchConfigLoads(t *testing.T) {
	t.Setenv("PGSWITCH_APP_PASSWORD", "app-secret")
	cfg, err := config.Load(filepath.Join("pgswitch", "pgswitch.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	db := cfg.Databases["app"]
	if db == nil || len(db.Servers) != 2 {
		t.Fatalf("database app: %+v", db)
	}
}
