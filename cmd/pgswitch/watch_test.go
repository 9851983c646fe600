package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// configMapVolume lays out dir as the kubelet does a ConfigMap volume:
// pgswitch.yaml -> ..data/pgswitch.yaml, ..data -> the current version's
// directory; update swaps ..data atomically to a new directory.
type configMapVolume struct {
	t       *testing.T
	dir     string
	version int
}

func (v *configMapVolume) update(content string) {
	v.t.Helper()
	v.version++
	ts := filepath.Join(v.dir, "..2026_12_07_00_00_0"+string(rune('0'+v.version)))
	if err := os.Mkdir(ts, 0o755); err != nil {
		v.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ts, "pgswitch.yaml"), []byte(content), 0o644); err != nil {
		v.t.Fatal(err)
	}
	tmp := filepath.Join(v.dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		v.t.Fatal(err)
	}
	old, _ := os.Readlink(filepath.Join(v.dir, "..data"))
	if err := os.Rename(tmp, filepath.Join(v.dir, "..data")); err != nil {
		v.t.Fatal(err)
	}
	if old != "" {
		os.RemoveAll(filepath.Join(v.dir, old))
	}
	if v.version == 1 {
		if err := os.Symlink("..data/pgswitch.yaml", filepath.Join(v.dir, "pgswitch.yaml")); err != nil {
			v.t.Fatal(err)
		}
	}
}

// watch runs watchConfig until stop is called.
func watch(path string, tick <-chan time.Time, changed chan<- struct{}) (stop func()) {
	loaded, _ := digest(path)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchConfig(ctx, path, loaded, tick, changed)
	}()
	return func() {
		cancel()
		<-done
	}
}

func TestWatchConfig(t *testing.T) {
	vol := &configMapVolume{t: t, dir: t.TempDir()}
	vol.update("listen: 127.0.0.1:6432\n")
	path := filepath.Join(vol.dir, "pgswitch.yaml")

	tick := make(chan time.Time)
	changed := make(chan struct{}, 1)
	stop := watch(path, tick, changed)
	// step returns once the watcher has handled two ticks (a change is
	// believed when two reads agree): the third send waits until it is
	// back for the next.
	step := func() {
		tick <- time.Time{}
		tick <- time.Time{}
		tick <- time.Time{}
	}
	expect := func(what string, want bool) {
		t.Helper()
		step()
		select {
		case <-changed:
			if !want {
				t.Errorf("%s: the watcher signalled a change, want none", what)
			}
		default:
			if want {
				t.Errorf("%s: no change signalled, want one", what)
			}
		}
	}
	expect("nothing done", false)
	vol.update("listen: 127.0.0.1:6432\npeer_id: 1\n")
	expect("the ConfigMap's symlink swapped to new content", true)
	expect("nothing done since", false)
	vol.update("listen: 127.0.0.1:6432\npeer_id: 1\n")
	expect("a swap to the same content", false)

	// A plain file: rewritten, removed, put back.
	plain := filepath.Join(t.TempDir(), "pgswitch.yaml")
	os.WriteFile(plain, []byte("a: 1\n"), 0o600)
	stop()
	stop = watch(plain, tick, changed)
	defer stop()
	expect("a new watcher", false) // it has read the file
	os.WriteFile(plain, []byte("a: 1\n"), 0o600)
	expect("rewritten with the same content", false)
	os.Remove(plain)
	expect("removed", false)
	os.WriteFile(plain, []byte("a: 1\n"), 0o600)
	expect("put back as it was", false)
	os.WriteFile(plain, []byte("a: 2\n"), 0o600)
	expect("edited", true)
	// Two changes before a reload is taken are one reload.
	os.WriteFile(plain, []byte("a: 3\n"), 0o600)
	step()
	os.WriteFile(plain, []byte("a: 4\n"), 0o600)
	expect("two edits", true)
	expect("after the coalesced reload", false)
}

// TestWatchSeesEditDuringStart: a file edited after the configuration was
// read from it, before the watch began, is reloaded (the watch compares
// with what was loaded, not with what it first reads).
func TestWatchSeesEditDuringStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pgswitch.yaml")
	if err := os.WriteFile(path, []byte("listen: 127.0.0.1:6432\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	loaded, _ := digest(path)
	if err := os.WriteFile(path, []byte("listen: 127.0.0.1:6433\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tick := make(chan time.Time)
	changed := make(chan struct{}, 1)
	go watchConfig(ctx, path, loaded, tick, changed)
	for range 3 {
		tick <- time.Now()
	}
	select {
	case <-changed:
	case <-time.After(time.Minute):
		t.Fatal("the edit made before the watch began was not seen")
	}
}
