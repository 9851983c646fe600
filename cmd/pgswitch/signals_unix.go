//go:build unix

package main

import (
	"os"
	"syscall"
)

// upgradeSignal starts a binary upgrade, as Odyssey's and nginx's.
var upgradeSignal os.Signal = syscall.SIGUSR2
