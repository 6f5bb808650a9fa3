package doctor

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/grantwatch/grantwatch/daemon/config"
	"github.com/grantwatch/grantwatch/daemon/notify"
)

// receiverCheck checks one [[notify]] entry without sending anything: its
// *_file files are readable and non-empty, its URL parses, its command
// exists; and, when the daemon runs (rs is its status of the receiver),
// how its deliveries went: a receiver whose last delivery failed fails,
// with the error and when it last succeeded. Only the URL's scheme and host
// are shown: the rest may be a secret (Slack webhook URLs are).
func receiverCheck(n notify.Config, rs *notify.ReceiverStatus, now time.Time) Check {
	c := Check{Name: "notify/" + n.Name, Status: CheckOK}
	var parts []string
	var warns, fails, fixes []string
	readFile := func(key, path string) (string, bool) {
		b, err := os.ReadFile(path)
		switch {
		case err != nil:
			fails = append(fails, fmt.Sprintf("%s %s: %v", key, path, unwrapPath(err)))
			fixes = append(fixes, fileFix(err, path, fmt.Sprintf("notify.%s.%s", n.Name, key)))
			return "", false
		case strings.TrimSpace(string(b)) == "":
			fails = append(fails, fmt.Sprintf("%s %s is empty", key, path))
			fixes = append(fixes, fmt.Sprintf("write the value into %s", path))
			return "", false
		}
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o004 != 0 {
			warns = append(warns, fmt.Sprintf("%s %s is world-readable (mode %04o)", key, path, fi.Mode().Perm()))
			fixes = append(fixes, fmt.Sprintf("chmod o-r %s", path))
		}
		return strings.TrimSpace(string(b)), true
	}
	rawURL, from := n.URL.Reveal(), ""
	if n.URLFile != "" {
		if s, ok := readFile("url_file", n.URLFile); ok {
			rawURL, from = s, " (from "+n.URLFile+")"
		}
	}
	if rawURL != "" {
		u, err := url.Parse(rawURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			fails = append(fails, "url is not an http(s) URL"+from)
			fixes = append(fixes, fmt.Sprintf("correct notify.%s.url", n.Name))
		} else {
			parts = append(parts, fmt.Sprintf("sends to %s://%s%s", u.Scheme, u.Host, from))
			if u.Scheme == "http" && !config.IsLoopback(u.Hostname()) {
				warns = append(warns, "url is plain http to a remote host: notifications travel unencrypted")
				fixes = append(fixes, fmt.Sprintf("use an https URL for notify.%s", n.Name))
			}
		}
	}
	if n.SecretFile != "" {
		if _, ok := readFile("secret_file", n.SecretFile); ok {
			parts = append(parts, "signed (secret_file readable)")
		}
	}
	if n.RoutingKeyFile != "" {
		if _, ok := readFile("routing_key_file", n.RoutingKeyFile); ok {
			parts = append(parts, "routing key file readable")
		}
	}
	if n.Type == notify.KindExec && len(n.Command) > 0 {
		if p, err := exec.LookPath(n.Command[0]); err != nil {
			fails = append(fails, fmt.Sprintf("command %s: %v", n.Command[0], unwrapExec(err)))
			fixes = append(fixes, fmt.Sprintf("install %s or correct notify.%s.command", n.Command[0], n.Name))
		} else {
			parts = append(parts, "runs "+p)
		}
	}
	if rs != nil {
		since := func(t time.Time) string {
			if t.IsZero() {
				return "never since the daemon started"
			}
			return roundAge(now.Sub(t)).String() + " ago"
		}
		switch {
		case rs.Failing():
			fails = append(fails, fmt.Sprintf("last delivery failed %s: %s; last success %s", since(rs.LastErrorAt), rs.LastError, since(rs.LastSuccess)))
			fixes = append(fixes, fmt.Sprintf("grantwatch notify test %s shows the receiver's answer: fix the receiver or notify.%s; the outbox retries meanwhile (grantwatch notify dead lists what gave up)", n.Name, n.Name))
		case !rs.LastSuccess.IsZero():
			parts = append(parts, "last delivered "+since(rs.LastSuccess))
		default:
			parts = append(parts, "nothing delivered since the daemon started")
		}
	}
	detail := n.Type
	if len(parts) > 0 {
		detail += ": " + strings.Join(parts, ", ")
	}
	switch {
	case len(fails) > 0:
		c.Status = CheckFail
		detail += "; " + strings.Join(append(fails, warns...), "; ")
	case len(warns) > 0:
		c.Status = CheckWarn
		detail += "; " + strings.Join(warns, "; ")
	}
	c.Detail = detail + " (doctor sends nothing: grantwatch notify test sends a test notification)"
	if len(fixes) > 0 {
		c.Fix = strings.Join(fixes, "; ")
	}
	return c
}

func unwrapExec(err error) error {
	var ee *exec.Error
	if errors.As(err, &ee) {
		return ee.Err
	}
	return err
}
