package main

import (
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"time"
)

// plainProgressEvery is how often progress goes to a non-terminal: a log
// file gets a line per phase and then one every so often, not two a second.
var plainProgressEvery = 5 * time.Second

// progressWriter is where a command writes a status line that rewrites
// itself in place ("\r", then the line; "\x1b[K" clears the rest): w itself
// when it is a terminal. Anywhere else (a pipe, a file, journald) each
// update becomes a line of its own, without \r or escape codes: the first
// of each phase (the text before its first ':') at once, then at most one
// every plainProgressEvery.
func progressWriter(w io.Writer) io.Writer {
	if isTerminal(w) {
		return w
	}
	return &plainProgress{w: w}
}

// csi matches the terminal control sequences progress lines use.
var csi = regexp.MustCompile("\x1b\\[[0-9;]*[A-Za-z]")

type plainProgress struct {
	mu    sync.Mutex
	w     io.Writer
	phase string
	last  time.Time
}

func (p *plainProgress) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	text := csi.ReplaceAllString(string(b), "")
	for _, line := range strings.FieldsFunc(text, func(r rune) bool { return r == '\r' || r == '\n' }) {
		line = strings.TrimRight(line, " ")
		if line == "" {
			continue
		}
		phase, _, _ := strings.Cut(line, ":")
		if phase == p.phase && time.Since(p.last) < plainProgressEvery {
			continue
		}
		p.phase, p.last = phase, time.Now()
		if _, err := fmt.Fprintln(p.w, line); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}
