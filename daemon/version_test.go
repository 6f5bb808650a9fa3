package daemon

import (
	"runtime/debug"
	"testing"
)

// TestVersionOf: a release build reports its -ldflags version, a module
// build its module version, a build in a checkout its VCS revision (dirty
// or not), and only a build with none of these "dev" (issue 12 item 15).
func TestVersionOf(t *testing.T) {
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	for _, tc := range []struct {
		name, version string
		bi            *debug.BuildInfo
		want          string
	}{
		{"ldflags", "v1.2.3", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "v1.2.3"},
		{"go install @version", "dev", &debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}}, "v1.4.0"},
		{"go 1.24 vcs version", "dev", &debug.BuildInfo{Main: debug.Module{Version: "v1.4.1-0.20250102150405-abcdef123456+dirty"}}, "v1.4.1-0.20250102150405-abcdef123456+dirty"},
		{"checkout, dirty", "dev", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs("ABCDEF1234567890abcdef1234567890abcdef12", "true")}, "devel-abcdef123456-dirty"},
		{"checkout, clean", "dev", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs("abcdef1234567890", "false")}, "devel-abcdef123456"},
		{"-buildvcs=false", "dev", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "dev"},
		{"no build info", "dev", nil, "dev"},
	} {
		if got := versionOf(tc.version, tc.bi); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
