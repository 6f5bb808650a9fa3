package systemd

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const unitFile = "grantwatch.service"

// maxExposure is the highest overall exposure systemd-analyze security may
// report for the unit (0.0 = fully sandboxed, 10.0 = unsafe).
const maxExposure = 2.0

var overallRE = regexp.MustCompile(`Overall exposure level for \S+: ([0-9]+(?:\.[0-9]+)?)`)

// TestSecurityExposure runs systemd-analyze on the unit file itself. The
// --offline mode (systemd ≥ 250) reads the file only, so it works in CI as root
// in a container where systemd is not PID 1. --json=short does not carry the
// overall score in systemd 252, so the text output is parsed.
func TestSecurityExposure(t *testing.T) {
	bin, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	cmd := exec.Command(bin, "security", "--offline=true", "--no-pager", unitFile)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	if strings.Contains(stderr.String(), "--offline") && strings.Contains(stderr.String(), "unrecognized") {
		t.Skipf("systemd-analyze too old for --offline: %s", strings.TrimSpace(stderr.String()))
	}
	if runErr != nil {
		t.Fatalf("systemd-analyze security: %v\nstdout:\n%s\nstderr:\n%s", runErr, stdout.String(), stderr.String())
	}

	// systemd ignores a line it cannot parse (unknown key, bad value) with a
	// warning "grantwatch.service:LINE: …"; an ignored line is a hole in the sandbox.
	for line := range strings.Lines(stderr.String()) {
		if strings.Contains(line, unitFile+":") {
			t.Errorf("systemd ignores a line of the unit: %s", strings.TrimSpace(line))
		}
	}

	m := overallRE.FindStringSubmatch(stdout.String())
	if m == nil {
		t.Fatalf("no overall exposure in output:\n%s", stdout.String())
	}
	got, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatalf("parse exposure %q: %v", m[1], err)
	}
	t.Logf("overall exposure: %.1f", got)
	if got > maxExposure {
		// The ✗ lines say which settings cost points.
		var misses []string
		for line := range strings.Lines(stdout.String()) {
			if strings.HasPrefix(line, "✗") {
				misses = append(misses, strings.TrimSpace(line))
			}
		}
		t.Fatalf("overall exposure = %.1f, want <= %.1f; missing:\n%s", got, maxExposure, strings.Join(misses, "\n"))
	}
}

// TestUnitDirectives checks the directives the daemon and STYLE.md rule 9 rely
// on, and that no hardening has cut what the daemon needs to work.
func TestUnitDirectives(t *testing.T) {
	u := parseUnit(t, unitFile)

	// Settings that must have exactly this effective (last assigned) value.
	want := []struct{ section, key, value string }{
		{"Service", "Type", "notify"},
		{"Service", "NotifyAccess", "main"},
		{"Service", "ExecStart", "/usr/local/bin/grantwatch run --config /etc/grantwatch/grantwatch.toml"},
		{"Service", "ExecReload", "/bin/kill -HUP $MAINPID"},
		{"Service", "WatchdogSec", "60s"},
		{"Service", "TimeoutStopSec", "30s"},
		{"Service", "Restart", "on-failure"},
		{"Service", "StateDirectory", "grantwatch"},
		{"Service", "RuntimeDirectory", "grantwatch"},
		{"Service", "RuntimeDirectoryMode", "0750"},
		{"Service", "ConfigurationDirectory", "grantwatch"},
		{"Service", "ProtectSystem", "strict"},
		{"Service", "UMask", "0077"},
		// An empty assignment resets the set: the last one must be empty.
		{"Service", "CapabilityBoundingSet", ""},
	}
	for _, w := range want {
		t.Run(w.key, func(t *testing.T) {
			got, ok := u.last(w.section, w.key)
			if !ok {
				t.Fatalf("[%s] %s= not set, want %q", w.section, w.key, w.value)
			}
			if got != w.value {
				t.Errorf("[%s] %s=%q, want %q", w.section, w.key, got, w.value)
			}
		})
	}

	for _, key := range []string{"DynamicUser", "NoNewPrivileges", "PrivateTmp", "PrivateDevices",
		"ProtectKernelTunables", "ProtectKernelModules", "ProtectControlGroups", "MemoryDenyWriteExecute"} {
		t.Run(key, func(t *testing.T) {
			got, _ := u.last("Service", key)
			if !isTrue(got) {
				t.Errorf("[Service] %s=%q, want yes", key, got)
			}
		})
	}

	t.Run("LoadCredential", func(t *testing.T) {
		const want = "grantwatch.key:/etc/grantwatch/grantwatch.key"
		if got := u.all("Service", "LoadCredential"); !slices.Contains(got, want) {
			t.Errorf("LoadCredential=%q, want one of them %q", got, want)
		}
	})

	// The daemon needs HTTPS and NTP (UDP) to arbitrary Internet addresses and
	// unix sockets for its control socket and sd_notify.
	t.Run("network", func(t *testing.T) {
		families, _ := u.last("Service", "RestrictAddressFamilies")
		for _, f := range []string{"AF_UNIX", "AF_INET", "AF_INET6"} {
			if strings.HasPrefix(families, "~") || !slices.Contains(strings.Fields(families), f) {
				t.Errorf("RestrictAddressFamilies=%q does not allow %s", families, f)
			}
		}
		if v, _ := u.last("Service", "PrivateNetwork"); isTrue(v) {
			t.Errorf("PrivateNetwork=%s cuts the daemon off from providers and NTP", v)
		}
		if v, ok := u.last("Service", "IPAddressDeny"); ok && v != "" {
			t.Errorf("IPAddressDeny=%s would block providers and NTP servers", v)
		}
	})
}

// unit is a parsed systemd unit file: every assignment of every key, in order,
// per section.
type unit map[string]map[string][]string

func (u unit) all(section, key string) []string { return u[section][key] }

func (u unit) last(section, key string) (string, bool) {
	v := u[section][key]
	if len(v) == 0 {
		return "", false
	}
	return v[len(v)-1], true
}

// parseUnit reads the subset of systemd.syntax(7) that unit files use:
// [Section] headers, Key=Value lines, # and ; comments, backslash continuations.
func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unit{}
	section := ""
	var pending string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if pending == "" && (line == "" || line[0] == '#' || line[0] == ';') {
			continue
		}
		if cont, ok := strings.CutSuffix(line, `\`); ok {
			pending += cont + " "
			continue
		}
		line, pending = pending+line, ""
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok || section == "" {
			t.Fatalf("%s:%d: not a Key=Value line in a section: %q", path, n, line)
		}
		key = strings.TrimSpace(key)
		u[section][key] = append(u[section][key], strings.TrimSpace(value))
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return u
}

// isTrue reports whether v is one of systemd's true booleans.
func isTrue(v string) bool {
	switch strings.ToLower(v) {
	case "1", "yes", "y", "true", "t", "on":
		return true
	}
	return false
}
