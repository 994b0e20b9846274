package training

import (
	"crypto/rand"
	"encoding/binary"
	"sync"
	"time"
)

const crockford = "0123456789abcdefghjkmnpqrstvwxyz"

var idState struct {
	sync.Mutex
	ms     uint64
	hi, lo uint64 // the last id's 80 random bits: 16 in hi, 64 in lo
}

// NewID returns a 26-character, lexically time-sortable unique id (a ULID in
// lower case): 48 bits of milliseconds, then 80 random bits. Ids made in the
// same millisecond (or when the clock steps back) by this process increase,
// so "newest first" is also creation order.
func NewID(now time.Time) string {
	ms := uint64(now.UnixMilli())
	idState.Lock()
	if ms <= idState.ms {
		ms = idState.ms
		idState.lo++
		if idState.lo == 0 {
			idState.hi = (idState.hi + 1) & 0xffff
		}
	} else {
		var r [10]byte
		if _, err := rand.Read(r[:]); err != nil {
			panic("crypto/rand failed: " + err.Error())
		}
		idState.ms = ms
		idState.hi = uint64(binary.BigEndian.Uint16(r[:2])) & 0x7fff // room to increment
		idState.lo = binary.BigEndian.Uint64(r[2:])
	}
	hi := ms<<16 | idState.hi
	lo := idState.lo
	idState.Unlock()

	// Encode 128 bits as 26 base32 characters, most significant first.
	var out [26]byte
	for i := 25; i >= 0; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}
