package web

import "time"

// SetHeartbeat shortens the event stream's heartbeat for a test.
func SetHeartbeat(d time.Duration) (restore func()) {
	old := heartbeat
	heartbeat = d
	return func() { heartbeat = old }
}

// SetWriteWait shortens the bound of each write to an event stream.
func SetWriteWait(d time.Duration) (restore func()) {
	old := writeWait
	writeWait = d
	return func() { writeWait = old }
}
