package main

import (
	"os"
)

// isTerminal reports whether w is a terminal: the place for prompts,
// progress rewritten in place and colours. A pipe, a file and /dev/null
// (a character device, but no terminal) are not.
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	return ok && fileIsTerminal(f)
}
