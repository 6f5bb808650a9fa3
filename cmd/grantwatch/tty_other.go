//go:build !linux

package main

import "os"

// fileIsTerminal approximates a terminal as a character device (which
// /dev/null also is) where TCGETS is not at hand.
func fileIsTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
