//go:build !unix

package main

import "os"

// upgradeSignal is nil where there is no SIGUSR2: upgrades go through the
// console's UPGRADE (which fails there: sockets cannot be handed over).
var upgradeSignal os.Signal
