package sqlite

import (
	"bytes"
	"fmt"

	"github.com/golang/snappy"
)

// Large text values (delivery payloads, model log tails) are stored
// compressed with Snappy. A delivery is ~4 KB of JSON, mostly its log: as
// it is, each row spills into an overflow page and so does the model's row,
// and every page a transaction dirties costs the single writer a WAL frame
// (two write calls and a checksum) at commit. Compressed (a training
// payload ~2.4×, a log tail ~4×, in microseconds) they fit in their b-tree
// pages, several to a page. Snappy rather than DEFLATE: several times
// faster for a somewhat worse ratio, and the writer is serial.
//
// A compressed value starts with packMark. Nothing stored plain does: a
// value that starts with a NUL (a refused delivery's body can be anything)
// is stored compressed whatever its size, so reading is never ambiguous.
// Values written before this existed are plain and read as they are.
const packMark = "\x00s"

// packMin is the size below which compressing is not worth it: such a
// value fits in its page anyway.
const packMin = 512

// pack returns b compressed and marked, or b itself when that does not save
// at least an eighth.
func pack(b []byte) []byte {
	mustPack := len(b) > 0 && b[0] == 0
	if len(b) < packMin && !mustPack {
		return b
	}
	out := make([]byte, len(packMark)+snappy.MaxEncodedLen(len(b)))
	copy(out, packMark)
	z := snappy.Encode(out[len(packMark):], b)
	n := len(packMark) + len(z)
	if n > len(b)-len(b)/8 && !mustPack {
		return b
	}
	return out[:n]
}

// unpack undoes pack. Plain values are returned as they are.
func unpack(b []byte) ([]byte, error) {
	if !bytes.HasPrefix(b, []byte(packMark)) {
		return b, nil
	}
	out, err := snappy.Decode(nil, b[len(packMark):])
	if err != nil {
		return nil, fmt.Errorf("decompress stored value: %w", err)
	}
	return out, nil
}

// packText is pack for a string column: a packed value is stored as a BLOB,
// a plain one as TEXT (so that the sqlite3 shell shows it as it always did).
func packText(s string) any {
	if len(s) < packMin && (s == "" || s[0] != 0) {
		return s
	}
	p := pack([]byte(s))
	if len(p) == len(s) && !bytes.HasPrefix(p, []byte(packMark)) {
		return s
	}
	return p
}

// unpackText is unpack for a string column.
func unpackText(s string) (string, error) {
	if len(s) < len(packMark) || s[:len(packMark)] != packMark {
		return s, nil
	}
	b, err := unpack([]byte(s))
	return string(b), err
}
