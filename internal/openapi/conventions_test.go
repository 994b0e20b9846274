package openapi_test

import (
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/service"
	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/training"
)

// Every response schema names exactly the fields of the Go type the server
// encodes: a field added to a type without its schema (or left in the schema
// after the type lost it) fails here, even when no end-to-end test happens
// to receive an answer carrying it.
func TestSchemasMatchTheGoTypes(t *testing.T) {
	doc := load(t)
	for name, typ := range map[string]reflect.Type{
		"ModelFields":         reflect.TypeFor[training.Model](),
		"ModelDetail":         reflect.TypeFor[service.ModelDetail](),
		"Progress":            reflect.TypeFor[training.Progress](),
		"HistoryEntry":        reflect.TypeFor[training.HistoryEntry](),
		"ModelWebhook":        reflect.TypeFor[service.ModelWebhook](),
		"NotificationFields":  reflect.TypeFor[store.Notification](),
		"NotificationDetail":  reflect.TypeFor[service.NotificationDetail](),
		"NotificationAttempt": reflect.TypeFor[store.NotificationAttempt](),
	} {
		ref := doc.Components.Schemas[name]
		if ref == nil || ref.Value == nil {
			t.Errorf("components/schemas/%s is missing", name)
			continue
		}
		inDoc := schemaProperties(ref.Value)
		inGo := jsonFields(typ)
		for _, f := range inGo {
			if !slices.Contains(inDoc, f) {
				t.Errorf("%s has JSON field %q, which components/schemas/%s does not describe", typ, f, name)
			}
		}
		for _, p := range inDoc {
			if !slices.Contains(inGo, p) {
				t.Errorf("components/schemas/%s describes %q, which %s does not have", name, p, typ)
			}
		}
	}
}

// schemaProperties lists the properties a schema describes itself and
// through its allOf members.
func schemaProperties(s *openapi3.Schema) []string {
	var names []string
	for n := range s.Properties {
		names = append(names, n)
	}
	for _, sub := range s.AllOf {
		if sub.Value != nil {
			names = append(names, schemaProperties(sub.Value)...)
		}
	}
	sort.Strings(names)
	return slices.Compact(names)
}

// jsonFields lists the names encoding/json gives t's fields, embedded
// structs flattened.
func jsonFields(t reflect.Type) []string {
	var names []string
	for f := range t.Fields() {
		tag := f.Tag.Get("json")
		if tag == "-" || !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			names = append(names, jsonFields(f.Type)...)
			continue
		}
		if name == "" {
			name = f.Name
		}
		names = append(names, name)
	}
	sort.Strings(names)
	return slices.Compact(names)
}

// The answers every API operation can get from the layers in front of its
// handler are listed: a token-guarded operation can meet a wrong token (401),
// a foreign Host (421) and the wrong-token limit (429); one that changes
// something can also meet the cross-site guard (403) and a body that is not
// JSON (415). The webhook intake has its own answers and no token.
func TestOperationsListTheCommonAnswers(t *testing.T) {
	doc := load(t)
	for path, item := range doc.Paths.Map() {
		if !strings.HasPrefix(path, "/api/") {
			continue
		}
		for method, op := range item.Operations() {
			var want []string
			secured := op.Security == nil || len(*op.Security) > 0
			if secured {
				want = append(want, "401", "421", "429")
			}
			if method != "GET" && !strings.HasPrefix(path, "/api/webhooks/") {
				want = append(want, "403", "415")
			}
			for _, code := range want {
				if op.Responses.Value(code) == nil {
					t.Errorf("%s %s does not list the %s answer", method, path, code)
				}
			}
		}
	}
}

// Every JSON answer's schema is closed (unevaluatedProperties: false, or a
// oneOf of closed schemas), so that a field the server starts sending fails
// the end-to-end validation until the document describes it. The one
// exception is this document itself.
func TestResponseSchemasAreClosed(t *testing.T) {
	doc := load(t)
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if op.OperationID == "openapi" {
				continue
			}
			for code, resp := range op.Responses.Map() {
				if resp.Value == nil {
					continue
				}
				mt := resp.Value.Content.Get("application/json")
				if mt == nil || mt.Schema == nil {
					continue
				}
				if !closed(mt.Schema.Value) {
					t.Errorf("%s %s → %s: the schema is open; set unevaluatedProperties: false", method, path, code)
				}
			}
		}
	}
}

func closed(s *openapi3.Schema) bool {
	if s == nil {
		return false
	}
	if len(s.OneOf) > 0 {
		for _, sub := range s.OneOf {
			if !closed(sub.Value) {
				return false
			}
		}
		return true
	}
	return s.UnevaluatedProperties.Has != nil && !*s.UnevaluatedProperties.Has
}

// The webhooks section describes every notification the server sends, each
// with its signature headers and an example (the loader validates examples
// against their schemas), and nothing it does not send.
func TestWebhooksDescribeEveryNotification(t *testing.T) {
	doc := load(t)
	var types []string
	for _, s := range training.Statuses {
		if typ := service.EventType(s); typ != "" {
			types = append(types, typ)
		}
	}
	if len(types) == 0 {
		t.Fatal("no status has a notification type: the check checks nothing")
	}
	for _, typ := range types {
		item := doc.Webhooks[typ]
		if item == nil || item.Post == nil {
			t.Errorf("webhooks has no POST %q", typ)
			continue
		}
		op := item.Post
		for _, h := range []string{replicate.HeaderID, replicate.HeaderTimestamp, replicate.HeaderSignature} {
			if p := op.Parameters.GetByInAndName("header", h); p == nil || !p.Required {
				t.Errorf("webhook %s does not describe its required %s header", typ, h)
			}
		}
		if op.RequestBody == nil || op.RequestBody.Value == nil {
			t.Errorf("webhook %s has no request body", typ)
			continue
		}
		mt := op.RequestBody.Value.Content.Get("application/json")
		if mt == nil || mt.Example == nil {
			t.Errorf("webhook %s has no JSON example", typ)
			continue
		}
		if ex, _ := mt.Example.(map[string]any); ex["type"] != typ {
			t.Errorf("webhook %s: its example has type %v", typ, ex["type"])
		}
	}
	for typ := range doc.Webhooks {
		if !slices.Contains(types, typ) {
			t.Errorf("webhooks describes %q, which the server never sends (it sends %v)", typ, types)
		}
	}
	ev := doc.Components.Schemas["NotificationEvent"]
	if ev == nil || ev.Value == nil || ev.Value.Properties["type"] == nil {
		t.Fatal("components/schemas/NotificationEvent, the body of a notification, is missing or has no type")
	}
	enum := ev.Value.Properties["type"].Value.Enum
	for _, typ := range types {
		if !slices.Contains(enum, any(typ)) {
			t.Errorf("NotificationEvent's type lists %v, not %q", enum, typ)
		}
	}
	if len(enum) != len(types) {
		t.Errorf("NotificationEvent's type lists %v; the server sends %v", enum, types)
	}
}
