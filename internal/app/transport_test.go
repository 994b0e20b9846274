package app

import "net/http"

// TestTransport carries the requests of this package's end-to-end tests.
// TestMain wraps it to check every answer against the OpenAPI document; the
// server's own clients keep http.DefaultTransport.
var TestTransport http.RoundTripper = http.DefaultTransport
