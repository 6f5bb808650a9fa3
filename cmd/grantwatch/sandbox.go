package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/grantwatch/grantwatch/probes/sandbox"
)

func init() { extraCommands = append(extraCommands, (*app).sandboxCmd) }

func (a *app) sandboxCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "sandbox [--dir D]",
		Short: "Run a loopback OAuth provider, NTP server and webhook to try grantwatch's real commands against",
		Long: `sandbox runs, until Ctrl-C, what grantwatch needs to be tried for real on one
machine: a token endpoint and an authorization endpoint (grantwatch's loopback
sandbox, answering in Google's and Microsoft's words), an NTP server and a webhook
receiver that prints what on-call would receive, all on 127.0.0.1. It writes a
config for them and a file of grants to import (healthy, rotating, revoked,
expired, password changed, MFA required, a failing one), and prints the commands
to run in another terminal: grants import, run, status, grants show, reconnect.

Unlike demo, nothing is scripted: the daemon, the database and the CLI are the
real ones, run by you. Nothing leaves this machine. Each start listens on new
ports and issues new tokens: run the daemon again and import the grants again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runSandbox(cmd.Context(), cmd.OutOrStdout(), dir)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory for the config, the grants file, the database and its key (default: a temporary one, removed at exit)")
	cmd.MarkFlagDirname("dir")
	return cmd
}

// sandboxGrants are the grants sandbox offers, one per way a grant lives
// or dies.
var sandboxGrants = []struct {
	id, provider string
	behavior     sandbox.Behavior
}{
	{"ann-healthy", "google", sandbox.Healthy},
	{"eve-rotating", "google", sandbox.Rotate},
	{"bob-revoked", "google", sandbox.Revoked},
	{"gus-failing", "google", sandbox.ServerError},
	{"cho-expired", "microsoft", sandbox.Expired},
	{"dee-password", "microsoft", sandbox.PasswordChanged},
	{"fay-mfa", "microsoft", sandbox.InteractionRequired},
}

func runSandbox(ctx context.Context, out io.Writer, dir string) error {
	keep := dir != ""
	if !keep {
		tmp, err := os.MkdirTemp("", "grantwatch-sandbox-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("sandbox --dir: %w", err)
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	sb, err := sandbox.Start()
	if err != nil {
		return err
	}
	defer sb.Close()
	ntp, err := sandbox.StartNTP()
	if err != nil {
		return err
	}
	defer ntp.Close()
	p := &demoPrinter{w: out, start: time.Now()}
	hook := p.webhook()
	defer hook.Close()
	listen, err := freeLoopbackAddr()
	if err != nil {
		return err
	}

	cfgPath := filepath.Join(dir, "grantwatch.toml")
	cfgText := fmt.Sprintf(`# grantwatch sandbox config: every endpoint is on 127.0.0.1 (grantwatch sandbox)
[daemon]
db = "grantwatch.db"
socket = "grantwatch.sock"
listen = %q
tick = "@every 2s"
backoff_min = "2s"
backoff_max = "30s"

[clock]
servers = [%q]
schedule = "@every 30s"

[[providers]]
name = "google"
preset = "google"
token_url = %q
auth_url = %q
client_id = "sandbox-client"
client_secret = "sandbox-secret"
interval = "30s"

[[providers]]
name = "microsoft"
preset = "microsoft"
token_url = %q
auth_url = %q
client_id = "sandbox-client"
client_secret = "sandbox-secret"
interval = "30s"

[[notify]]
name = "sandbox-webhook"
type = "webhook"
url = %q
group_wait = "0s"
`, listen, ntp.Addr(), sb.TokenURL(), sb.AuthURL(), sb.TokenURL(), sb.AuthURL(), hook.URL)
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		return err
	}
	// The files hold the sandbox's refresh tokens and client secret; what
	// is printed shows where they go, not the values (no token or secret
	// in CLI output, even a sandbox's).
	var lines, shown []string
	for _, g := range sandboxGrants {
		line := map[string]any{
			"id": g.id, "provider": g.provider, "refresh_token": sb.Issue(g.behavior),
			"subject": strings.SplitN(g.id, "-", 2)[0] + "@sandbox.example", "labels": map[string]string{"behavior": string(g.behavior)},
		}
		b, err := json.Marshal(line)
		if err != nil {
			return err
		}
		lines = append(lines, string(b))
		line["refresh_token"] = inTheFile
		b, _ = json.Marshal(line)
		shown = append(shown, string(b))
	}
	grantsPath := filepath.Join(dir, "grants.jsonl")
	if err := os.WriteFile(grantsPath, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return err
	}

	fmt.Fprintf(out, `grantwatch sandbox: an OAuth provider (token endpoint %s, authorization
endpoint %s), an NTP server (%s) and a webhook receiver that
prints what on-call receives, all on 127.0.0.1. Nothing leaves this machine.

config: %s
grants: %s (%d grants, one per way a grant lives or dies)

In another terminal:

  export GRANTWATCH_CONFIG=%s
  grantwatch doctor                        # checks the installation
  grantwatch grants import %s
  grantwatch run                           # the daemon; probes every 30s

and in a third one, while it runs:

  grantwatch status                        # bob, cho, dee and fay need reconnecting
  grantwatch grants show bob-revoked       # its history, cause and fix
  grantwatch explain --provider microsoft < some-answer.json
  grantwatch reconnect bob-revoked --no-browser   # open the URL it prints (curl -L works): the sandbox consents at once
  curl -s http://%s/metrics | grep grantwatch_grants

Notifications the daemon sends appear below. The config (secrets in the file):

%s
The grants file (import the file: its refresh tokens are not shown here):

%s
Ctrl-C stops the sandbox`, sb.TokenURL(), sb.AuthURL(), ntp.Addr(), cfgPath, grantsPath, len(lines),
		cfgPath, grantsPath, listen, indent(clientSecrets.ReplaceAllString(cfgText, `$1"`+inTheFile+`"`)), indent(strings.Join(shown, "\n")))
	if keep {
		fmt.Fprintf(out, "; %s stays", dir)
	} else {
		fmt.Fprintf(out, " and removes %s", dir)
	}
	fmt.Fprintln(out, ".")
	<-ctx.Done()
	fmt.Fprintln(out, "\nsandbox stopped")
	return nil
}

// inTheFile stands for a secret in the printed copy of a file that holds it.
const inTheFile = "(in the file)"

// clientSecrets finds the client_secret values of a config's text.
var clientSecrets = regexp.MustCompile(`(?m)^(client_secret\s*=\s*)"[^"]*"`)

// indent indents each line of s by two spaces.
func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  ") + "\n"
}

// freeLoopbackAddr is a TCP address on 127.0.0.1 that nothing listens on
// now, for the daemon's listener.
func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	return ln.Addr().String(), ln.Close()
}
