package store

import (
	"fmt"

	"github.com/grantwatch/grantwatch/internal/secret"
)

// GetLease returns a grant with its decrypted token without moving its due
// time: a probe on request (grants probe, set-token) rather than on schedule.
func (db *DB) GetLease(id string) (Lease, error) {
	var g Grant
	var sealed []byte
	ring := db.keys.Load() // before the snapshot: it holds every key the snapshot needs
	err := db.view(func(b *bkts) error {
		row, cur, ok, err := b.lookup(id)
		if err == nil && !ok {
			err = notFound(id)
		}
		g = cur
		sealed = clone(b.tokens.Get(rowKey(row)))
		return err
	})
	if err != nil {
		return Lease{}, err
	}
	pt, err := ring.openToken(&g, sealed)
	if err != nil {
		return Lease{}, fmt.Errorf("open token of %q in %s: %w", id, db.path, err)
	}
	return Lease{Grant: g, Token: secret.Secret(pt)}, nil
}
