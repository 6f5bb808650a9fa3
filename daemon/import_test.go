package daemon

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

// TestImportStreamsProgressWhileReading: the import answer streams progress
// while the input is still being read. The input must arrive intact all the
// same (an HTTP/1 server that flushed its answer stops reading the request
// unless asked for full duplex), and the client sees both phases.
func TestImportStreamsProgressWhileReading(t *testing.T) {
	old := importProgressEvery
	importProgressEvery = time.Millisecond
	defer func() { importProgressEvery = old }()

	c, d := reviewClient(t)

	const n = 40000
	pr, pw := io.Pipe()
	go func() {
		for i := range n {
			fmt.Fprintf(pw, `{"id":"bulk-%06d","provider":"acme","refresh_token":"rt_%016x","labels":{"tenant":"t%d"}}`+"\n", i, i*7919, i%7)
			if i%5000 == 0 {
				time.Sleep(5 * time.Millisecond) // a slow uploader: progress goes out meanwhile
			}
		}
		pw.Close()
	}()
	phases := map[string]int{}
	p, err := c.Import(context.Background(), pr, func(p ImportProgress) { phases[p.Phase]++ })
	if err != nil {
		t.Fatal(err)
	}
	if p.Created != n {
		t.Fatalf("created %d of %d grants", p.Created, n)
	}
	if phases["validating"] == 0 {
		t.Errorf("no progress while reading the input: %v", phases)
	}
	g, err := d.DB().Get("bulk-039999")
	if err != nil || g.Labels["tenant"] != fmt.Sprintf("t%d", 39999%7) || !strings.HasPrefix(g.ID, "bulk-") {
		t.Fatalf("last grant: %v %+v", err, g)
	}
}
