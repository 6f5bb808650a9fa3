package store

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// bbolt's on-disk meta page, as far as precheck needs it (bbolt
// internal/common/meta.go): a 16-byte page header, then magic, version,
// page size, flags (4 bytes each), root bucket (pgid, sequence), freelist
// pgid, high-water pgid, txid, checksum (8 bytes each), little-endian on the
// platforms grantwatch runs on.
const (
	boltMagic         = 0xED0CDAED
	boltVersion       = 2
	boltPageHeader    = 16
	boltMetaSumLen    = 56 // bytes covered by the checksum
	boltNoFreelist    = ^uint64(0)
	boltMinPageSize   = 512
	boltMaxPageSize   = 1 << 16
	defaultOSPageSize = 4096
)

type boltMeta struct {
	pageSize             uint32
	freelist, pgid, txid uint64
}

func parseBoltMeta(b []byte) (boltMeta, bool) {
	if len(b) < boltPageHeader+boltMetaSumLen+8 {
		return boltMeta{}, false
	}
	m := b[boltPageHeader:]
	le := binary.LittleEndian
	if le.Uint32(m[0:]) != boltMagic || le.Uint32(m[4:]) != boltVersion {
		return boltMeta{}, false
	}
	h := fnv.New64a()
	h.Write(m[:boltMetaSumLen])
	if h.Sum64() != le.Uint64(m[boltMetaSumLen:]) {
		return boltMeta{}, false
	}
	return boltMeta{pageSize: le.Uint32(m[8:]), freelist: le.Uint64(m[32:]), pgid: le.Uint64(m[40:]), txid: le.Uint64(m[48:])}, true
}

// precheck looks for a truncated file before bbolt maps it. bbolt reads the
// freelist and data pages through mmap; a page beyond the end of the file
// faults, and although the fault can be recovered as a panic, the mapping
// (and with it the file lock) would stay behind. Files whose meta pages are
// both unreadable are left to bbolt, which reports them as invalid.
func precheck(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return nil // missing: bbolt creates it; unreadable: bbolt reports it
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return nil
	}
	buf := make([]byte, 2*boltMaxPageSize)
	n, err := f.ReadAt(buf, 0)
	if err != nil && err != io.EOF {
		return fmt.Errorf("open %s: %w", path, err)
	}
	buf = buf[:n]
	m0, ok0 := parseBoltMeta(buf)
	var m boltMeta
	var ok bool
	for _, ps := range []uint32{m0.pageSize, defaultOSPageSize} {
		if ps < boltMinPageSize || ps > boltMaxPageSize || int(ps) >= len(buf) {
			continue
		}
		if m1, ok1 := parseBoltMeta(buf[ps:]); ok1 && (!ok0 || m1.txid > m0.txid) {
			m, ok = m1, true
			break
		}
	}
	if !ok {
		m, ok = m0, ok0
	}
	if !ok {
		return nil
	}
	need := int64(m.pgid) * int64(m.pageSize)
	if m.pgid == 0 || m.pageSize < boltMinPageSize || need/int64(m.pageSize) != int64(m.pgid) {
		return corruptError(path, fmt.Errorf("meta page holds impossible sizes"))
	}
	if fi.Size() < need {
		return corruptError(path, fmt.Errorf("file is %d bytes, its pages need %d: truncated", fi.Size(), need))
	}
	if m.freelist != boltNoFreelist && m.freelist >= m.pgid {
		return corruptError(path, fmt.Errorf("freelist page %d beyond the last page %d", m.freelist, m.pgid))
	}
	return nil
}
