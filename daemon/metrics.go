package daemon

import (
	"net/http"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/grantwatch/grantwatch/probes"
)

// Version is grantwatch's version, set at build time with
// -ldflags "-X github.com/grantwatch/grantwatch/daemon.Version=…".
var Version = "dev"

// metrics are the daemon's own Prometheus series. No grant id or subject is
// ever a label: a fleet of a million grants would be a million series.
type promMetrics struct {
	reg       *prometheus.Registry
	probes    *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	notifySum *prometheus.Desc
}

func newMetrics(d *Daemon) *promMetrics {
	m := &promMetrics{reg: prometheus.NewRegistry()}
	m.probes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "grantwatch_probes_total",
		Help: "Refresh probes by provider and cause (cause \"none\" is a success).",
	}, []string{"provider", "cause"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "grantwatch_probe_duration_seconds",
		Help:    "Time from sending a refresh request to its answer.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 10),
	}, []string{"provider"})
	bi := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "grantwatch_build_info",
		Help:        "Build information; the value is always 1.",
		ConstLabels: prometheus.Labels{"version": BuildVersion(), "goversion": runtime.Version()},
	})
	bi.Set(1)
	m.reg.MustRegister(m.probes, m.latency, bi, stateCollector{d}, forecastCollector{d},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *promMetrics) observe(provider string, r probes.Result) {
	cause := string(r.Cause)
	if r.OK || cause == "" {
		cause = "none"
	}
	m.probes.WithLabelValues(provider, cause).Inc()
	if r.Status != 0 && r.Latency > 0 { // an app's report (observe mode) has no latency
		m.latency.WithLabelValues(provider).Observe(r.Latency.Seconds())
	}
}

// BuildVersion is the version grantwatch reports (Version, else the module
// version or VCS revision it was built from: versionOf).
func BuildVersion() string {
	bi, _ := debug.ReadBuildInfo()
	return versionOf(Version, bi)
}

var (
	descGrants = prometheus.NewDesc("grantwatch_grants",
		"Grants by provider and state.", []string{"provider", "state"}, nil)
	descClockOffset = prometheus.NewDesc("grantwatch_clock_offset_seconds",
		"This host's clock minus true time, by the source that measured it.", []string{"source"}, nil)
	descClockSkewed = prometheus.NewDesc("grantwatch_clock_skewed",
		"1 while the clock is skewed beyond clock.max_offset and invalid_grant verdicts are held.", nil, nil)
	descOutboxPending = prometheus.NewDesc("grantwatch_outbox_pending",
		"Notifications waiting for delivery.", nil, nil)
	descOutboxAge = prometheus.NewDesc("grantwatch_outbox_oldest_age_seconds",
		"Age of the oldest notification waiting for delivery; 0 when none waits.", nil, nil)
	descLastTick = prometheus.NewDesc("grantwatch_last_tick_timestamp_seconds",
		"When the scheduler last scanned for due grants, as a Unix time.", nil, nil)
	descNotifications = prometheus.NewDesc("grantwatch_notifications_total",
		"Notification deliveries by receiver and result (sent, failed).", []string{"receiver", "result"}, nil)
	descProviderUp = prometheus.NewDesc("grantwatch_provider_healthy",
		"1 when the provider is ok, 0 in outage or misconfigured.", []string{"provider"}, nil)
	// The names and meanings of Prometheus's and Alertmanager's own
	// (prometheus_config_last_reload_successful, …), so the usual alert
	// on them fits.
	descReloadOK = prometheus.NewDesc("grantwatch_config_last_reload_successful",
		"1 when the last config reload succeeded (or none was tried), 0 when it failed and the previous config stays in force.", nil, nil)
	descReloadAt = prometheus.NewDesc("grantwatch_config_last_reload_success_timestamp_seconds",
		"When the running config was loaded (at start or by the last successful reload), as a Unix time.", nil, nil)
)

// stateCollector reads the store's counters and the daemon's state at scrape
// time: O(providers × states), never a scan of the fleet.
type stateCollector struct{ d *Daemon }

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descGrants, descClockOffset, descClockSkewed,
		descOutboxPending, descOutboxAge, descLastTick, descNotifications, descProviderUp,
		descReloadOK, descReloadAt} {
		ch <- d
	}
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	d := c.d
	if counts, err := d.stateCounts(); err == nil {
		for prov, m := range counts {
			for state, n := range m {
				ch <- prometheus.MustNewConstMetric(descGrants, prometheus.GaugeValue, float64(n), prov, string(state))
			}
		}
	}
	cs := d.clock.Snapshot()
	if cs.NTPOK {
		ch <- prometheus.MustNewConstMetric(descClockOffset, prometheus.GaugeValue, cs.NTPOffset.Seconds(), "ntp")
	}
	if cs.DateSamples > 0 {
		ch <- prometheus.MustNewConstMetric(descClockOffset, prometheus.GaugeValue, cs.DateOffset.Seconds(), "date_header")
	}
	skewed := 0.0
	if cs.State == ClockSkewed {
		skewed = 1
	}
	ch <- prometheus.MustNewConstMetric(descClockSkewed, prometheus.GaugeValue, skewed)
	if pending, oldest, err := d.db.OutboxStats(); err == nil {
		ch <- prometheus.MustNewConstMetric(descOutboxPending, prometheus.GaugeValue, float64(pending))
		age := 0.0
		if !oldest.IsZero() {
			age = d.now().Sub(oldest).Seconds()
		}
		ch <- prometheus.MustNewConstMetric(descOutboxAge, prometheus.GaugeValue, age)
	}
	if t := d.lastTick.Load(); t != 0 {
		ch <- prometheus.MustNewConstMetric(descLastTick, prometheus.GaugeValue, float64(t)/float64(time.Second))
	}
	for recv, s := range d.disp.Stats().Receivers {
		ch <- prometheus.MustNewConstMetric(descNotifications, prometheus.CounterValue, float64(s.Sent), recv, "sent")
		ch <- prometheus.MustNewConstMetric(descNotifications, prometheus.CounterValue, float64(s.Failed), recv, "failed")
	}
	for _, p := range d.providerStates() {
		up := 0.0
		if p.State == "ok" {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descProviderUp, prometheus.GaugeValue, up, p.Name)
	}
	ok, at := d.reloads.lastGood()
	ch <- prometheus.MustNewConstMetric(descReloadOK, prometheus.GaugeValue, b2f(ok))
	ch <- prometheus.MustNewConstMetric(descReloadAt, prometheus.GaugeValue, float64(at.UnixNano())/float64(time.Second))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (d *Daemon) metricsHandler() http.Handler {
	return promhttp.HandlerFor(d.metrics.reg, promhttp.HandlerOpts{})
}

// MetricsGatherer is the daemon's metrics registry (tests lint it).
func (d *Daemon) MetricsGatherer() prometheus.Gatherer { return d.metrics.reg }
