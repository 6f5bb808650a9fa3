package bench

import (
	"context"
	"testing"
	"time"
)

// TestBrokerBenchSmoke runs `grantwatch bench --broker` for a second: it
// must answer every request from the tokens held (no refresh reaches the
// provider, no error) and report each figure, the ceiling's too. It asserts no rate: CI
// machines vary (this one's figures are in the README).
func TestBrokerBenchSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, netHTTP := range []bool{false, true} {
		r, err := RunBroker(ctx, BrokerOptions{Grants: 10, Clients: 8, Duration: time.Second, NetHTTP: netHTTP})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%+v", r)
		if r.Requests == 0 || r.PerSec <= 0 || r.Errors != 0 || r.ProviderRequests != 0 || r.CPUMicrosPerRequest <= 0 ||
			r.P50Ms <= 0 || r.P99Ms < r.P50Ms || r.MaxMs <= 0 || r.CPUPercent <= 0 || r.Grants != 10 || r.Clients != 8 ||
			r.CeilingPerSec <= 0 || r.CeilingP99Ms < r.CeilingP50Ms || r.Ratio <= 0 {
			t.Errorf("implausible result: %+v", r)
		}
	}
}
