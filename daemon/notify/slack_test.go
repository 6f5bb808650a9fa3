package notify

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// Slack incoming webhooks: POST the webhook URL with {"text": fallback,
// "blocks": [...]}; text is the notification fallback when blocks are set.
// Block Kit: header text is plain_text ≤150 chars, section text ≤3000,
// at most 50 blocks; &, < and > must be escaped in mrkdwn. Answer 200 "ok".
// (docs.slack.dev messaging/sending-messages-using-incoming-webhooks and
// reference/block-kit/blocks.)
func TestSlackRequest(t *testing.T) {
	rc := newReceiver(t, nil)
	c := Config{Name: "slack", Type: KindSlack, URL: secretOf(rc.URL + "/services/T000/B000/XXXX")}
	var evs []Event
	for i := range 37 {
		evs = append(evs, revoked(i, "google"))
	}
	evs[0].Grant.Subject = "<!channel> & co"
	if _, err := send(t, c, t0, evs...); err != nil {
		t.Fatal(err)
	}
	var msg struct {
		Text   string `json:"text"`
		Blocks []struct {
			Type     string `json:"type"`
			Text     *struct{ Type, Text string }
			Elements []struct{ Type, Text string }
		} `json:"blocks"`
	}
	if err := json.Unmarshal(rc.requests()[0].Body, &msg); err != nil {
		t.Fatal(err)
	}
	if msg.Text != "37 grants of google: revoked (needs reconnect)" {
		t.Errorf("text = %q", msg.Text)
	}
	var types []string
	for _, b := range msg.Blocks {
		types = append(types, b.Type)
	}
	if want := []string{"header", "section", "section", "context"}; !reflect.DeepEqual(types, want) {
		t.Fatalf("blocks = %v, want %v", types, want)
	}
	if h := msg.Blocks[0].Text; h.Type != "plain_text" || len(h.Text) > 150 || h.Text != msg.Text {
		t.Errorf("header = %+v", h)
	}
	if f := msg.Blocks[1].Text; f.Type != "mrkdwn" || !strings.Contains(f.Text, "`revoked`") || !strings.Contains(f.Text, "grantwatch grants set-token ID") {
		t.Errorf("fix section = %+v", f)
	}
	list := msg.Blocks[2].Text.Text
	if strings.Count(list, "\n")+1 != slackListed || !strings.Contains(list, "&lt;!channel&gt; &amp; co") || strings.Contains(list, "<!channel>") {
		t.Errorf("list = %q, want %d escaped lines", list, slackListed)
	}
	if !strings.Contains(list, "grant `g-0000` (") || !strings.Contains(list, "of *google*") {
		t.Errorf("list lacks grant/subject/provider: %q", list)
	}
	if foot := msg.Blocks[3].Elements[0].Text; !strings.Contains(foot, "27 more (37 in all)") {
		t.Errorf("context = %q, want the count of the rest", foot)
	}
	for _, b := range msg.Blocks {
		if b.Text != nil && len(b.Text.Text) > 3000 {
			t.Errorf("%s block has %d chars", b.Type, len(b.Text.Text))
		}
	}
}

// FuzzSlack: whatever the events hold, the message is JSON within Block
// Kit's limits (50 blocks, header 150 characters, text and sections 3000),
// no text carries Slack markup (< or >: a subject must not ping <!channel>
// or forge a link), and the webhook URL's token is in neither the message
// nor the error of a receiver that echoes the request.
func FuzzSlack(f *testing.F) {
	rc := newEchoReceiver(f)
	client := newHTTPClient()
	fuzzNotifications(f, func(t *testing.T, n Notification) {
		token := fuzzSecret()
		c := Config{Name: "slack", Type: KindSlack, URL: secretOf(rc.URL + "/services/T0/B0/" + token)}
		body := sendEchoed(t, rc, client, c, n, token)[0].Body
		var msg slackMessage
		if err := json.Unmarshal(body, &msg); err != nil {
			t.Fatalf("message is not JSON: %v\n%s", err, body)
		}
		if strings.Contains(string(body), token) {
			t.Errorf("the message holds the URL's token: %s", body)
		}
		if len(msg.Blocks) > 50 || len(msg.Blocks) == 0 || msg.Blocks[0].Type != "header" {
			t.Fatalf("blocks = %+v, want a header and at most 50", msg.Blocks)
		}
		texts := []string{msg.Text}
		for _, b := range msg.Blocks {
			if b.Text != nil {
				texts = append(texts, b.Text.Text)
			}
			for _, e := range b.Elements {
				if m, ok := e.(map[string]any); ok {
					if s, ok := m["text"].(string); ok {
						texts = append(texts, s)
					}
				}
			}
		}
		if h := utf8.RuneCountInString(msg.Blocks[0].Text.Text); h > 150 {
			t.Errorf("header has %d characters, Slack allows 150", h)
		}
		for _, s := range texts {
			if utf8.RuneCountInString(s) > 3000 {
				t.Errorf("a text has %d characters, Slack allows 3000", utf8.RuneCountInString(s))
			}
			if strings.ContainsAny(s, "<>") {
				t.Errorf("unescaped markup in %q", s)
			}
		}
	})
}
