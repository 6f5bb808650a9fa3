package notify

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
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
