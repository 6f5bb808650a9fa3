package config

import (
	"strings"
	"testing"
	"time"
)

func TestReconnectConfig(t *testing.T) {
	tests := []struct {
		name string
		toml string
		// wantErr is a part of the error; "" wants the config valid.
		wantErr  string
		wantURL  string
		wantTTL  time.Duration
		callback string
	}{
		{"off by default", "", "", "", DefaultLinkTTL, ""},
		{"https, trailing slash trimmed", "[reconnect]\npublic_url = \"https://gw.example.com/\"\nlink_ttl = \"1h\"\n", "",
			"https://gw.example.com", time.Hour, "https://gw.example.com/reconnect/callback"},
		{"http on loopback (tests)", "[reconnect]\npublic_url = \"http://127.0.0.1:9464\"\n", "", "http://127.0.0.1:9464", DefaultLinkTTL, "http://127.0.0.1:9464/reconnect/callback"},
		{"http elsewhere", "[reconnect]\npublic_url = \"http://gw.example.com\"\n", "reconnect.public_url: must be https", "", 0, ""},
		{"a path", "[reconnect]\npublic_url = \"https://example.com/gw\"\n", "reconnect.public_url: must be scheme://host[:port] without a path", "", 0, ""},
		{"no listener", "[daemon]\nlisten = \"\"\n[reconnect]\npublic_url = \"https://gw.example.com\"\n", "reconnect.public_url: needs daemon.listen", "", 0, ""},
		{"ttl too long", "[reconnect]\nlink_ttl = \"1000h\"\n", "reconnect.link_ttl: must be between 1m and 720h", "", 0, ""},
		{"ttl too short", "[reconnect]\nlink_ttl = \"1s\"\n", "reconnect.link_ttl:", "", 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("/tmp/x/grantwatch.toml", []byte(tt.toml))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %v, want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			r := c.Reconnect
			if r.PublicURL != tt.wantURL || r.LinkTTL != tt.wantTTL || r.CallbackURL() != tt.callback {
				t.Errorf("got %+v (callback %q), want %q, %s, %q", r, r.CallbackURL(), tt.wantURL, tt.wantTTL, tt.callback)
			}
		})
	}
}
