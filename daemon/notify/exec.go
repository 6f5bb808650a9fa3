package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"time"
)

// execSender runs a command (argv, no shell) with the Notification JSON on
// its standard input and a minimal environment (execEnv). Exit status 0
// accepts the notification; anything else, including a timeout, is a failure
// to retry.
type execSender struct {
	name string
	argv []string
	red  redactor
}

// Send implements Sender.
func (e *execSender) Send(ctx context.Context, n Notification) (Delivery, error) {
	body, err := json.Marshal(n)
	if err != nil {
		return Delivery{}, fmt.Errorf("encode notification: %w", err)
	}
	cmd := exec.CommandContext(ctx, e.argv[0], e.argv[1:]...)
	cmd.Stdin = bytes.NewReader(body)
	cmd.Env = execEnv(os.Getenv)
	var out limitedBuffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	// A child that keeps a pipe open must not hold the dispatcher past the
	// deadline.
	cmd.WaitDelay = time.Second
	err = cmd.Run()
	d := Delivery{Answer: e.red.String(short(out.String())), Retry: true}
	if err == nil {
		return d, nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		d.Status = ee.ExitCode()
		if ctx.Err() != nil {
			return d, fmt.Errorf("run %s: %w", e.argv[0], ctx.Err())
		}
		return d, &StatusError{Receiver: e.name, Status: d.Status, Answer: d.Answer}
	}
	return d, e.red.Error(fmt.Errorf("run %s: %w", e.argv[0], err))
}

// defaultPath is the PATH of a command when the daemon has none (systemd's
// default for services).
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// execEnv is the whole environment of an exec receiver: PATH and LANG, read
// with getenv from the daemon's. Nothing else passes: the daemon's
// environment may name its secrets (CREDENTIALS_DIRECTORY under systemd, a
// *_FILE variable, a proxy URL with a password), and a receiver's script has
// no use for them. The event is on standard input.
func execEnv(getenv func(string) string) []string {
	path := getenv("PATH")
	if path == "" {
		path = defaultPath
	}
	env := []string{"PATH=" + path}
	if lang := getenv("LANG"); lang != "" {
		env = append(env, "LANG="+lang)
	}
	return env
}

// limitedBuffer keeps the first 4 KiB written to it and discards the rest.
type limitedBuffer struct{ bytes.Buffer }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := 4096 - b.Len(); room > 0 {
		if len(p) > room {
			b.Buffer.Write(p[:room])
		} else {
			b.Buffer.Write(p)
		}
	}
	return len(p), nil
}
