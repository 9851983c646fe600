package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// requiredTools are the server binaries Start runs; they must live side by side.
var requiredTools = []string{"initdb", "pg_ctl", "postgres", "pg_basebackup"}

// binDirEnv overrides the search, for machines with PostgreSQL in an unusual place.
const binDirEnv = "PGSWITCH_PG_BINDIR"

// Available finds the directory holding initdb, pg_ctl, postgres and pg_basebackup:
// $PGSWITCH_PG_BINDIR if set, else the highest version among the directory of initdb
// on PATH and /usr/lib/postgresql/*/bin. The error says what is missing where.
func Available() (binDir string, err error) {
	if dir := os.Getenv(binDirEnv); dir != "" {
		if missing := missingTools(dir); len(missing) > 0 {
			return "", fmt.Errorf("%s=%s: missing %s", binDirEnv, dir, strings.Join(missing, ", "))
		}
		return dir, nil
	}

	var candidates []string
	if p, err := exec.LookPath("initdb"); err == nil {
		// /usr/local/bin/initdb is often a symlink into the real bin directory,
		// where its siblings are.
		if real, err := filepath.EvalSymlinks(p); err == nil {
			candidates = append(candidates, filepath.Dir(real))
		}
		candidates = append(candidates, filepath.Dir(p))
	}
	globbed, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	candidates = append(candidates, globbed...)

	best, bestVersion := "", -1
	var problems []string
	seen := map[string]bool{}
	for _, dir := range candidates {
		if seen[dir] {
			continue
		}
		seen[dir] = true
		if missing := missingTools(dir); len(missing) > 0 {
			problems = append(problems, fmt.Sprintf("%s lacks %s", dir, strings.Join(missing, ", ")))
			continue
		}
		v, err := majorVersion(dir)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		if v > bestVersion {
			best, bestVersion = dir, v
		}
	}
	if best != "" {
		return best, nil
	}
	if len(problems) == 0 {
		return "", errors.New("PostgreSQL server binaries not found: no initdb on PATH nor under /usr/lib/postgresql/*/bin (install postgresql-15 or set " + binDirEnv + ")")
	}
	return "", fmt.Errorf("PostgreSQL server binaries not found: %s", strings.Join(problems, "; "))
}

func missingTools(dir string) []string {
	var missing []string
	for _, tool := range requiredTools {
		info, err := os.Stat(filepath.Join(dir, tool))
		if err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
			missing = append(missing, tool)
		}
	}
	return missing
}

var versionRE = regexp.MustCompile(`\(PostgreSQL\) (\d+)`)

// majorVersion asks initdb rather than trusting the directory name, which PATH
// directories do not carry.
func majorVersion(dir string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(dir, "initdb"), "--version").Output()
	if err != nil {
		return 0, fmt.Errorf("%s/initdb --version: %w", dir, err)
	}
	m := versionRE.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("%s/initdb --version: unexpected answer %q", dir, strings.TrimSpace(string(out)))
	}
	return strconv.Atoi(string(m[1]))
}
