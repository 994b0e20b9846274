package httpapi_test

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/trainhook/trainhook/internal/httpapi"
	"github.com/trainhook/trainhook/internal/service"
	"github.com/trainhook/trainhook/internal/training"
)

// Status is the one mapping of errors to status codes, for the API and the
// dashboard's pages: each kind has its code, wrapping does not hide it, and
// internal errors are never shown.
func TestStatus(t *testing.T) {
	for _, c := range []struct {
		name     string
		err      error
		code     int
		msg      string
		showable bool
	}{
		{"invalid", &service.Error{Kind: service.Invalid, Msg: "bad"}, 400, "bad", true},
		{"not found", &service.Error{Kind: service.NotFound, Msg: "gone"}, 404, "gone", true},
		{"conflict", &service.Error{Kind: service.Conflict, Msg: "busy"}, 409, "busy", true},
		{"forbidden", &service.Error{Kind: service.Forbidden, Msg: "no"}, 403, "no", true},
		{"upstream", &service.Error{Kind: service.Upstream, Msg: "Replicate said 500"}, 502, "Replicate said 500", true},
		{"wrapped", fmt.Errorf("load: %w", &service.Error{Kind: service.NotFound, Msg: "gone"}), 404, "gone", true},
		{"status error", httpapi.Errorf(http.StatusTooManyRequests, "slow down %d", 3), 429, "slow down 3", true},
		{"refused", &service.ErrRefused{Model: training.Model{Error: "no GPU"}, Err: errors.New("422")}, 422, "Replicate refused the training: no GPU", true},
		{"internal kind", &service.Error{Kind: service.Internal, Msg: "disk", Err: errors.New("EIO")}, 500, "", false},
		{"plain error", errors.New("database is locked"), 500, "", false},
	} {
		code, msg, showable := httpapi.Status(c.err)
		if code != c.code || msg != c.msg || showable != c.showable {
			t.Errorf("%s: Status = %d %q %v, want %d %q %v", c.name, code, msg, showable, c.code, c.msg, c.showable)
		}
	}
}
