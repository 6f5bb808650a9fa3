package probes

import (
	"net/url"
	"testing"
)

// TestPresetUserInfo: a preset's userinfo endpoint is an https URL and
// names the account by at least its id, since the reconnect link's account
// check rests on it.
func TestPresetUserInfo(t *testing.T) {
	n := 0
	for _, name := range PresetNames() {
		ui := presets[name].UserInfo
		if ui.URL == "" {
			if ui.Scope != "" || len(ui.ID)+len(ui.Email)+len(ui.Username) > 0 {
				t.Errorf("%s: UserInfo without a URL: %+v", name, ui)
			}
			continue
		}
		n++
		if u, err := url.Parse(ui.URL); err != nil || u.Scheme != "https" || u.Host == "" {
			t.Errorf("%s: UserInfo.URL %q is not an https URL", name, ui.URL)
		}
		if len(ui.ID) == 0 {
			t.Errorf("%s: UserInfo names no id member", name)
		}
	}
	if n == 0 {
		t.Error("no preset has a userinfo endpoint")
	}
}
