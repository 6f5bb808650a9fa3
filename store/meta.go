package store

import "fmt"

// GetMeta returns the daemon state stored under key (provider and clock
// states, anything that must survive a restart), or nil, nil when absent.
func (db *DB) GetMeta(key string) ([]byte, error) {
	var v []byte
	err := db.view(func(b *bkts) error {
		v = clone(b.daemon.Get([]byte(key)))
		return nil
	})
	return v, err
}

// PutMeta stores val under key; a nil val deletes the key.
func (db *DB) PutMeta(key string, val []byte) error {
	return db.update(func(b *bkts) error { return b.putMeta(key, val) })
}

func (b *bkts) putMeta(key string, val []byte) error {
	if key == "" {
		return fmt.Errorf("meta key is empty")
	}
	var err error
	if val == nil {
		err = b.daemon.Delete([]byte(key))
	} else {
		err = b.daemon.Put([]byte(key), val)
	}
	if err != nil {
		return fmt.Errorf("write meta %q: %w", key, err)
	}
	return nil
}
