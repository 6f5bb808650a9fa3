package doctor

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/grantwatch/grantwatch/daemon/config"
)

// systemd reports the systemd environment: the variables the unit sets and
// whether the key credential is there. cfg may be nil (invalid config).
func (d *doctor) systemd(cfg *config.Config) Check {
	c := Check{Name: "systemd", Status: CheckOK}
	env := d.opts.Getenv
	under := env("INVOCATION_ID") != "" || env("NOTIFY_SOCKET") != ""
	_, unitErr := os.Stat(d.opts.UnitFile)
	hasUnit := unitErr == nil
	if !under && !hasUnit {
		c.Detail = "not under systemd, and no unit at " + d.opts.UnitFile
		return c
	}
	var parts []string
	if under {
		parts = append(parts, "running under systemd")
		for _, k := range []string{"STATE_DIRECTORY", "RUNTIME_DIRECTORY", "CREDENTIALS_DIRECTORY"} {
			v := env(k)
			if v == "" {
				v = "(unset)"
			}
			parts = append(parts, k+"="+v)
		}
		if dir := env("CREDENTIALS_DIRECTORY"); dir != "" {
			cred := filepath.Join(dir, keyCredential)
			if _, err := os.Stat(cred); err == nil {
				parts = append(parts, "credential "+keyCredential+" present")
			} else {
				c.Status = CheckWarn
				parts = append(parts, "credential "+keyCredential+" missing")
				c.Fix = "add LoadCredential=" + keyCredential + ":/etc/grantwatch/grantwatch.key to the unit (systemd/grantwatch.service), or set secrets.key_file"
			}
		} else if cfg != nil && cfg.Secrets.KeyFile != "" {
			parts = append(parts, "key from secrets.key_file "+cfg.Secrets.KeyFile)
		}
	} else {
		parts = append(parts, "not under systemd here; unit "+d.opts.UnitFile)
		parts = append(parts, unitSettings(d.opts.UnitFile)...)
	}
	c.Detail = strings.Join(parts, ", ")
	return c
}

// unitSettings lists the unit's directory and credential settings.
func unitSettings(path string) []string {
	f, err := os.Open(path)
	if err != nil {
		return []string{fmt.Sprintf("unreadable: %v", unwrapPath(err))}
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "Type", "StateDirectory", "RuntimeDirectory":
			out = append(out, strings.TrimSpace(k)+"="+strings.TrimSpace(v))
		case "LoadCredential", "LoadCredentialEncrypted", "SetCredential":
			// Only the credential's name: SetCredential= carries the value.
			name, _, _ := strings.Cut(strings.TrimSpace(v), ":")
			out = append(out, strings.TrimSpace(k)+"="+name)
		}
	}
	return out
}
