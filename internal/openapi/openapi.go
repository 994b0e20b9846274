// Package openapi holds the OpenAPI 3.1 document of trainhook's HTTP API and
// serves it at GET /api/openapi.json. The document is written by hand; tests
// keep it true: every route the server registers is in it, and every answer
// the end-to-end tests receive validates against it.
package openapi

import (
	_ "embed"
	"net/http"
)

// Path is where the document is served.
const Path = "/api/openapi.json"

//go:embed openapi.json
var doc []byte

// Document returns the document's JSON.
func Document() []byte { return doc }

// Handler serves the document. It needs no API token: it describes the API,
// and holds nothing of the server's data or configuration.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		_, _ = w.Write(doc)
	})
}
