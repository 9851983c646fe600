package main

import (
	"context"
	"crypto/sha256"
	"os"
	"time"
)

// watchConfig reads path on every tick and signals changed when its
// content differs from what was last signalled (at first: loaded, the
// digest of what the running configuration was read from) and has
// stayed the same for two reads in a row, so that a file caught half
// written is not reloaded: an edit, a file renamed over it, or Kubernetes
// updating a ConfigMap volume, which swaps the volume's ..data symlink to a
// new directory (the path is read through the links, so the swap is seen;
// a subPath mount is never updated by Kubernetes and so never seen).
// Content, not mtime: a ConfigMap update that changes nothing, or a touch,
// reloads nothing. An unreadable file (between a delete and a rewrite) is
// not a change. Signals are coalesced: changed holds one. It returns when
// ctx ends.
func watchConfig(ctx context.Context, path string, loaded [sha256.Size]byte, tick <-chan time.Time, changed chan<- struct{}) {
	signalled := loaded
	var seen [sha256.Size]byte // the last read, when it differed from signalled
	pending := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
		}
		sum, err := digest(path)
		switch {
		case err != nil || sum == signalled:
			pending = false
			continue
		case !pending || sum != seen:
			seen, pending = sum, true // read again before believing it
			continue
		}
		signalled, pending = sum, false
		select {
		case changed <- struct{}{}:
		default: // a reload is pending already
		}
	}
}

func digest(path string) ([sha256.Size]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return [sha256.Size]byte{}, err
	}
	return sha256.Sum256(data), nil
}
