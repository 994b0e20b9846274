package pgtest

import (
	"regexp"
	"strings"
	"testing"
)

func TestDBName(t *testing.T) {
	valid := regexp.MustCompile(`^trainhook_test_[a-z0-9_]*_[0-9a-f]{12}$`)
	for _, test := range []string{"TestX", "TestConformance/ModelRoundTrip", strings.Repeat("Ünïcode/ß ", 20), ""} {
		a, b := dbName(test), dbName(test)
		if !valid.MatchString(a) || len(a) > 63 {
			t.Errorf("dbName(%q) = %q: want lower-case letters, digits, underscores, at most 63 bytes", test, a)
		}
		if a == b {
			t.Errorf("dbName(%q) twice gave %q both times", test, a)
		}
	}
}

func TestWithDatabase(t *testing.T) {
	for _, tc := range []struct{ admin, want string }{
		{"postgres://u:p%40ss@127.0.0.1:5432/postgres?sslmode=disable", "postgres://u:p%40ss@127.0.0.1:5432/db1?sslmode=disable"},
		{"postgresql://u@h/", "postgresql://u@h/db1"},
		{"host=h user=u dbname=postgres", "host=h user=u dbname=postgres dbname=db1"},
	} {
		if got := withDatabase(tc.admin, "db1"); got != tc.want {
			t.Errorf("withDatabase(%q) = %q, want %q", tc.admin, got, tc.want)
		}
	}
}

// URL gives each caller its own empty database, and drops it afterwards.
func TestURL(t *testing.T) {
	a, b := URL(t), URL(t)
	if a == b {
		t.Errorf("two calls gave the same database: %s", a)
	}
}
