package daemon

import (
	"runtime/debug"
	"strings"
)

// versionOf is the version BuildVersion reports for a binary whose
// Version is set and whose build information is bi (nil when there is
// none):
//   - Version when a release build set it (-ldflags "-X …daemon.Version=v1.2.3");
//   - else the main module's version, when the go command knew one
//     (go install …@v1.2.3, or Go 1.24's version from the VCS tag or
//     commit, such as v1.2.4-0.20250102150405-abcdef123456+dirty);
//   - else "devel-" and the first 12 hex digits of the VCS revision, with
//     "-dirty" for uncommitted changes (a go build in a checkout);
//   - else "dev".
func versionOf(version string, bi *debug.BuildInfo) string {
	if version != "dev" && version != "" {
		return version
	}
	if bi == nil {
		return "dev"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value[:min(12, len(s.Value))]
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if rev == "" {
		return "dev"
	}
	return "devel-" + strings.ToLower(rev) + dirty
}
