package sandbox

import (
	"net/http"
	"testing"
	"testing/synctest"
	"time"
)

func TestRotationGrace(t *testing.T) {
	// exchange presents tok and returns the new refresh token, or "" when
	// the answer is the reuse error.
	exchange := func(t *testing.T, h http.Handler, tok string) string {
		t.Helper()
		w := post(t, h, tok, nil)
		a := decode(t, w)
		switch {
		case w.Code == http.StatusOK && a.RefreshToken != "":
			return a.RefreshToken
		case w.Code == http.StatusBadRequest && a.Error == "invalid_grant":
			return ""
		}
		t.Fatalf("got %d %+v, want a new token or invalid_grant", w.Code, a)
		return ""
	}
	const grace = 5 * time.Second

	tests := []struct {
		name string
		// run presents tokens of a chain started at "t0" and reports
		// whether the chain must end revoked.
		run        func(t *testing.T, s *Server) (wantRevoked bool)
		wantGraced int64
		wantReused int64
	}{{
		// The answer carrying t1 was lost: t0 comes back within grace and
		// gets a new token, which works; so does its successor.
		name: "previous token within grace",
		run: func(t *testing.T, s *Server) bool {
			h := s.Handler()
			if exchange(t, h, "t0") == "" {
				t.Fatal("first exchange refused")
			}
			time.Sleep(grace - time.Second)
			t2 := exchange(t, h, "t0")
			if t2 == "" {
				t.Fatal("previous token refused within grace")
			}
			if t3 := exchange(t, h, t2); t3 == "" {
				t.Fatal("token issued within grace refused")
			}
			return false
		},
		wantGraced: 1,
	}, {
		// A reuse within grace is an exchange: the window starts again.
		name: "grace restarts",
		run: func(t *testing.T, s *Server) bool {
			h := s.Handler()
			exchange(t, h, "t0")
			time.Sleep(grace - time.Second)
			exchange(t, h, "t0")
			time.Sleep(grace - time.Second)
			if exchange(t, h, "t0") == "" {
				t.Fatal("previous token refused within grace of its last exchange")
			}
			return false
		},
		wantGraced: 2,
	}, {
		// Without a grace period the same sequence is reuse.
		name: "grace off",
		run: func(t *testing.T, s *Server) bool {
			s.SetRotationGrace(0)
			h := s.Handler()
			exchange(t, h, "t0")
			if exchange(t, h, "t0") != "" {
				t.Fatal("previous token accepted without grace")
			}
			return true
		},
		wantReused: 1,
	}, {
		// The grace period counts from the rotation.
		name: "after the grace period",
		run: func(t *testing.T, s *Server) bool {
			h := s.Handler()
			exchange(t, h, "t0")
			time.Sleep(grace + time.Second)
			if exchange(t, h, "t0") != "" {
				t.Fatal("previous token accepted after the grace period")
			}
			return true
		},
		wantReused: 1,
	}, {
		// Once the newer token was used, the old one is second-to-last:
		// presenting it is reuse, grace or not (Auth0).
		name: "second-to-last token",
		run: func(t *testing.T, s *Server) bool {
			h := s.Handler()
			t1 := exchange(t, h, "t0")
			exchange(t, h, t1)
			if exchange(t, h, "t0") != "" {
				t.Fatal("second-to-last token accepted")
			}
			return true
		},
		wantReused: 1,
	}, {
		// A reuse within grace abandons the token it replaces: t1 was
		// never delivered, so presenting it now is reuse.
		name: "abandoned token",
		run: func(t *testing.T, s *Server) bool {
			h := s.Handler()
			t1 := exchange(t, h, "t0")
			exchange(t, h, "t0")
			if exchange(t, h, t1) != "" {
				t.Fatal("abandoned token accepted")
			}
			return true
		},
		wantGraced: 1,
		wantReused: 1,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := New()
				s.SetRotationGrace(grace)
				s.Add("t0", Rotate)
				wantRevoked := tt.run(t, s)
				st := s.Stats()
				if st.GraceReused != tt.wantGraced || st.Reused != tt.wantReused {
					t.Errorf("GraceReused, Reused = %d, %d, want %d, %d", st.GraceReused, st.Reused, tt.wantGraced, tt.wantReused)
				}
				if got := exchange(t, s.Handler(), s.Current("t0")) == ""; got != wantRevoked {
					t.Errorf("chain revoked = %v, want %v", got, wantRevoked)
				}
			})
		})
	}
}
