package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/grantwatch/grantwatch/internal/secret"
)

// slackListed is how many events a Slack message lists one by one; the rest
// are counted.
const slackListed = 10

// slack posts an incoming-webhook message: a plain "text" fallback (used in
// notifications and by clients without blocks) and Block Kit blocks: a
// header, what to do, the first events and a count of the rest.
type slack struct {
	name   string
	url    secret.Secret // the webhook URL is the credential
	client *http.Client
	red    redactor
	now    func() time.Time
}

// slackMessage is the incoming-webhook body.
type slackMessage struct {
	Text   string       `json:"text"`
	Blocks []slackBlock `json:"blocks"`
}

type slackBlock struct {
	Type string     `json:"type"`
	Text *slackText `json:"text,omitempty"`
	// Elements are slackText (context) or slackButton (actions).
	Elements []any `json:"elements,omitempty"`
}

// slackButton is a link button: a click opens URL.
type slackButton struct {
	Type     string    `json:"type"` // button
	Text     slackText `json:"text"` // plain_text, ≤ 75 chars
	URL      string    `json:"url"`  // ≤ 3000 chars
	ActionID string    `json:"action_id"`
}

type slackText struct {
	Type string `json:"type"` // plain_text or mrkdwn
	Text string `json:"text"`
}

// Send implements Sender.
func (s *slack) Send(ctx context.Context, n Notification) (Delivery, error) {
	body, err := json.Marshal(slackRender(n))
	if err != nil {
		return Delivery{}, fmt.Errorf("encode slack message: %w", err)
	}
	return post(ctx, s.client, s.name, s.url.Reveal(), nil, body, s.red, s.now)
}

// slackRender builds the message. Limits (Slack Block Kit reference): header
// text ≤ 150 chars, section text ≤ 3000 chars, ≤ 50 blocks.
func slackRender(n Notification) slackMessage {
	// The headline names grants and providers, and Slack reads markup
	// (<!here>, <url|text>) in the fallback text and shows the header as
	// sent: escaped in both.
	head := slackEscape(headline(n))
	msg := slackMessage{Text: truncate(head, 3000)}
	msg.Blocks = append(msg.Blocks, slackBlock{Type: "header", Text: &slackText{"plain_text", truncate(head, 150)}})

	// What to do: one fix per distinct cause, in order of appearance.
	var fixes []string
	seen := map[string]bool{}
	for _, ev := range n.Events {
		c := eventCause(ev)
		if ev.Fix == "" || seen[c+"\x00"+ev.Type] {
			continue
		}
		seen[c+"\x00"+ev.Type] = true
		label := "*Fix*"
		if c != "" {
			label = "*Cause* `" + slackEscape(c) + "` — *fix*"
		}
		fixes = append(fixes, label+": "+slackEscape(ev.Fix))
	}
	if len(fixes) > 0 {
		msg.Blocks = append(msg.Blocks, slackSection(strings.Join(fixes, "\n\n")))
	}

	var lines []string
	for i, ev := range n.Events {
		if i == slackListed {
			break
		}
		lines = append(lines, "• "+slackLine(ev))
	}
	msg.Blocks = append(msg.Blocks, slackSection(strings.Join(lines, "\n")))
	if b, ok := slackReconnectButtons(n.Events); ok {
		msg.Blocks = append(msg.Blocks, b)
	}

	foot := "notification " + n.ID
	if rest := len(n.Events) - slackListed; rest > 0 {
		foot = fmt.Sprintf("…and %d more (%d in all) · %s", rest, len(n.Events), foot)
	}
	if len(n.Events) > 0 && n.Events[0].Test {
		foot = "This is a test sent by `grantwatch notify test`; no action needed · " + foot
	}
	msg.Blocks = append(msg.Blocks, slackBlock{Type: "context", Elements: []any{slackText{"mrkdwn", foot}}})
	return msg
}

// slackReconnectButtons is an actions block with a Reconnect button per
// listed event that carries a reconnect_url.
func slackReconnectButtons(evs []Event) (slackBlock, bool) {
	b := slackBlock{Type: "actions"}
	for i, ev := range evs {
		if i == slackListed {
			break
		}
		if ev.Grant == nil || ev.Grant.ReconnectURL == "" || len(ev.Grant.ReconnectURL) > 3000 {
			continue
		}
		b.Elements = append(b.Elements, slackButton{Type: "button",
			Text: slackText{"plain_text", truncate("Reconnect "+ev.Grant.ID, 75)},
			URL:  ev.Grant.ReconnectURL, ActionID: fmt.Sprintf("reconnect-%d", i)})
	}
	return b, len(b.Elements) > 0
}

func slackSection(text string) slackBlock {
	return slackBlock{Type: "section", Text: &slackText{"mrkdwn", truncate(text, 3000)}}
}

// slackLine is one event in mrkdwn: what, which grant/subject/provider, cause.
func slackLine(ev Event) string {
	var b strings.Builder
	if ev.Test {
		b.WriteString(testPrefix)
	}
	switch {
	case ev.Grant != nil:
		fmt.Fprintf(&b, "*%s*: grant `%s`", what[ev.Type], slackEscape(ev.Grant.ID))
		if ev.Grant.Subject != "" {
			fmt.Fprintf(&b, " (%s)", slackEscape(ev.Grant.Subject))
		}
		fmt.Fprintf(&b, " of *%s*", slackEscape(ev.Grant.Provider))
	case ev.Provider != nil:
		fmt.Fprintf(&b, "*%s*: *%s*", what[ev.Type], slackEscape(ev.Provider.Name))
		if ev.Provider.Grants > 0 {
			fmt.Fprintf(&b, " (%d grants affected)", ev.Provider.Grants)
		}
	case ev.Clock != nil:
		fmt.Fprintf(&b, "*%s*: offset %.1fs", what[ev.Type], ev.Clock.OffsetSeconds)
	default:
		b.WriteString(slackEscape(ev.Type))
	}
	if c := eventCause(ev); c != "" {
		fmt.Fprintf(&b, " — cause `%s`", slackEscape(c))
	}
	if ev.Summary != "" {
		b.WriteString(" — " + slackEscape(strings.TrimPrefix(ev.Summary, testPrefix)))
	}
	return truncate(b.String(), 280)
}

// slackEscape escapes the three characters Slack treats as markup, so a
// grant's subject cannot ping <!channel> or forge a link.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
