package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/pgswitch/pgswitch/config"
)

// The README and ARCHITECTURE.md, read as a newcomer reads them: the
// commands they show work as shown, print what they say, and the files they
// name are in the repository.

const repoRoot = "../.."

func readDoc(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// codeBlocks returns the fenced blocks of md whose info string is info
// ("" for none), each as its lines.
func codeBlocks(md, info string) [][]string {
	var blocks [][]string
	var cur []string
	in := false
	for _, line := range strings.Split(md, "\n") {
		switch {
		case !in && line == "```"+info:
			in, cur = true, nil
		case in && line == "```":
			in = false
			blocks = append(blocks, cur)
		case in:
			cur = append(cur, line)
		}
	}
	return blocks
}

// shell runs a README line with sh in the repository's root, with the
// test's pgswitch first on PATH and "go run ./cmd/pgswitch" meaning it too.
func shell(t *testing.T, line string, env ...string) (string, error) {
	t.Helper()
	line = strings.ReplaceAll(line, "go run ./cmd/pgswitch ", "pgswitch ")
	cmd := exec.Command("sh", "-c", line)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(binary)+string(os.PathListSeparator)+os.Getenv("PATH"))
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// The classify examples print what the README shows under them.
func TestREADMEClassifyExamples(t *testing.T) {
	n := 0
	for _, block := range codeBlocks(readDoc(t, "README.md"), "sh") {
		for i := 0; i < len(block); i++ {
			if !strings.HasPrefix(block[i], "go run ./cmd/pgswitch classify ") {
				continue
			}
			j := i + 1
			for j < len(block) && !strings.HasPrefix(block[j], "go run ") && !strings.HasPrefix(block[j], "pgswitch ") {
				j++
			}
			want := strings.Join(block[i+1:j], "\n") + "\n"
			got, err := shell(t, block[i])
			if err != nil || got != want {
				t.Errorf("%s: got (%v)\n%s\nREADME shows\n%s", block[i], err, got, want)
			}
			n++
		}
	}
	if n < 2 {
		t.Fatalf("found %d classify examples in README.md, want at least 2", n)
	}
}

// check-config works on the example exactly as the README says to run it,
// with nothing set beforehand.
func TestREADMECheckConfig(t *testing.T) {
	t.Setenv("PGSWITCH_APP_PASSWORD", "")
	os.Unsetenv("PGSWITCH_APP_PASSWORD")
	found := false
	for _, block := range codeBlocks(readDoc(t, "README.md"), "sh") {
		for _, line := range block {
			if !strings.Contains(line, "pgswitch check-config pgswitch.yaml") {
				continue
			}
			found = true
			line, _, _ = strings.Cut(line, "#")
			out, err := shell(t, line)
			if err != nil || !strings.HasPrefix(out, "pgswitch.yaml: OK") {
				t.Errorf("%s: got (%v)\n%s", line, err, out)
			}
		}
	}
	if !found {
		t.Fatal("README.md shows no 'pgswitch check-config pgswitch.yaml'")
	}
}

// "Where queries go" opens with the consistency the default gives, and
// names the default config really has.
func TestREADMEConsistencyDefault(t *testing.T) {
	cfg, err := config.Parse([]byte("databases:\n  app:\n    servers: [{host: 127.0.0.1}]\nusers:\n  app:\n    password: x\n"))
	if err != nil {
		t.Fatal(err)
	}
	readme := readDoc(t, "README.md")
	_, section, _ := strings.Cut(readme, "## Where queries go\n\n")
	first, _, _ := strings.Cut(section, "\n\n")
	want := "By default (`routing.consistency: " + string(cfg.Routing.Consistency) + "`) reads see your writes"
	if !strings.HasPrefix(first, want) {
		t.Errorf("\"Where queries go\" begins %q, want it to begin %q", first, want)
	}
}

// The README points at nothing outside the repository, and every file or
// folder ARCHITECTURE.md names exists.
func TestDocsStayInRepository(t *testing.T) {
	readme := readDoc(t, "README.md")
	if strings.Contains(readme, "../") {
		t.Errorf("README.md refers to a path outside the repository: %q", regexp.MustCompile(`\S*\.\./\S*`).FindString(readme))
	}
	for _, m := range regexp.MustCompile(`\]\(([^)#]+)\)`).FindAllStringSubmatch(readme, -1) {
		if !strings.Contains(m[1], "://") {
			if _, err := os.Stat(filepath.Join(repoRoot, m[1])); err != nil {
				t.Errorf("README.md links to %s: %v", m[1], err)
			}
		}
	}
	arch := readDoc(t, "ARCHITECTURE.md")
	n := 0
	for _, m := range regexp.MustCompile("`([a-z_/.]+)`").FindAllStringSubmatch(arch, -1) {
		path := m[1]
		if !strings.Contains(path, "/") && !strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, ".md") {
			continue // an identifier
		}
		if strings.HasPrefix(path, "/") || strings.Contains(path, "..") {
			t.Errorf("ARCHITECTURE.md names %s, outside the repository", path)
			continue
		}
		n++
		if _, err := os.Stat(filepath.Join(repoRoot, path)); err == nil {
			continue
		}
		// A file named with its folder left implicit: `decide_test.go`
		// beside `router/decide.go`.
		if matches, _ := filepath.Glob(filepath.Join(repoRoot, "*", path)); len(matches) > 0 {
			continue
		}
		if matches, _ := filepath.Glob(filepath.Join(repoRoot, "*", "*", path)); len(matches) > 0 {
			continue
		}
		t.Errorf("ARCHITECTURE.md names %s, which is not in the repository", path)
	}
	if n < 20 {
		t.Errorf("found %d paths in ARCHITECTURE.md, want the many it names", n)
	}
}

// readmeDemoOutput is what the README shows the demo printing, as patterns:
// "…", numbers and the env file's name stand for what changes.
func readmeDemoOutput(t *testing.T) []*regexp.Regexp {
	t.Helper()
	for _, block := range codeBlocks(readDoc(t, "README.md"), "") {
		if len(block) == 0 || !strings.HasPrefix(block[0], "export DATABASE_URL=") {
			continue
		}
		var out []*regexp.Regexp
		for _, line := range block {
			re := regexp.QuoteMeta(strings.ReplaceAll(line, "/tmp/pgswitch-demo.env", "…"))
			re = strings.ReplaceAll(re, "…", ".*")
			re = regexp.MustCompile(`[0-9]+`).ReplaceAllString(re, "[0-9]+")
			out = append(out, regexp.MustCompile("^"+re+"$"))
		}
		return out
	}
	t.Fatal("README.md shows no demo output (a block starting export DATABASE_URL=)")
	return nil
}
