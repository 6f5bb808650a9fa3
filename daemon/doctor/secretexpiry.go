package doctor

import (
	"fmt"
	"time"

	"github.com/grantwatch/grantwatch/daemon/config"
)

// secretExpiry checks each provider's client_secret_expires_at: a warn
// within forecast.warn_before of the expiry (the daemon sends
// provider.secret_expiring then), a fail once it has passed (the provider
// rejects the client and every grant of it is held). Providers without the
// key get no check.
func secretExpiry(cfg *config.Config, now time.Time) []Check {
	var out []Check
	for _, p := range cfg.Providers {
		at, ok := p.SecretExpiresAt()
		if !ok {
			continue
		}
		c := Check{Name: "provider/" + p.Name + "/secret_expiry", Status: CheckOK,
			Detail: fmt.Sprintf("client secret expires %s (in %s)", at.UTC().Format(time.RFC3339), config.Days(at.Sub(now).Truncate(24*time.Hour)))}
		fix := fmt.Sprintf("create a new client secret for the app, put it in providers.%s.client_secret_file, set providers.%s.client_secret_expires_at to its expiry and reload", p.Name, p.Name)
		switch left := at.Sub(now); {
		case left <= 0:
			c.Status, c.Fix = CheckFail, fix
			c.Detail = fmt.Sprintf("client secret expired %s: the provider rejects the client, and every grant of it is held", at.UTC().Format(time.RFC3339))
		case left <= cfg.Forecast.WarnBefore:
			c.Status, c.Fix = CheckWarn, fix
			c.Detail = fmt.Sprintf("client secret expires %s, in %s (within forecast.warn_before)", at.UTC().Format(time.RFC3339), left.Round(time.Hour))
		}
		out = append(out, c)
	}
	return out
}
