package api

import (
	"fmt"
	"time"
)

// ClusterStatus is status's view of a fleet sharing an etcd store
// (store.backend = "etcd"); absent with bbolt.
type ClusterStatus struct {
	// Name is the answering instance's; Role "leader" or "standby".
	Name string `json:"name"`
	Role string `json:"role"`
	// Leader names the instance that leads ("" while none does), LeaderURL
	// its advertised URL.
	Leader    string `json:"leader,omitempty"`
	LeaderURL string `json:"leader_url,omitempty"`
	// LeaseMarginSeconds is how long this instance's lease surely lives;
	// a leader starts a refresh only with daemon.probe_timeout of it.
	LeaseMarginSeconds float64 `json:"lease_margin_seconds"`
	// Members are the instances whose session lives, with their last
	// heartbeat.
	Members []ClusterMember `json:"members"`
}

// ClusterMember is one instance of the fleet.
type ClusterMember struct {
	Name      string    `json:"name"`
	URL       string    `json:"url,omitempty"`
	Leader    bool      `json:"leader"`
	Started   time.Time `json:"started"`
	Heartbeat time.Time `json:"heartbeat"`
}

// NotLeaderError is a standby's answer to a request only the leader
// serves (a probe, a token refresh): 503 with Retry-After, naming the
// leader so that the caller can go there.
type NotLeaderError struct {
	Leader, LeaderURL string
	RetryAfter        time.Duration
}

func (e *NotLeaderError) Error() string {
	switch {
	case e.Leader == "":
		return "this instance is a standby and no instance leads right now: retry in a moment"
	case e.LeaderURL == "":
		return fmt.Sprintf("this instance is a standby: %s leads; run the command there", e.Leader)
	default:
		return fmt.Sprintf("this instance is a standby: %s leads, at %s", e.Leader, e.LeaderURL)
	}
}
