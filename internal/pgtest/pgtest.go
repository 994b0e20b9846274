// Package pgtest gives tests a fresh, empty PostgreSQL database on the test
// server named by TRAINHOOK_TEST_POSTGRES_URL. Start one with
//
//	eval "$(bash .ci/postgres.sh)"
//
// Without the variable, tests that need PostgreSQL are skipped, except
// under CI (CI set), where they fail: CI must not pass by testing nothing.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/jackc/pgx/v5"
)

// EnvURL names the variable holding the test server's admin URL: a role
// that may create and drop databases.
const EnvURL = "TRAINHOOK_TEST_POSTGRES_URL"

// URL creates a uniquely named, empty database on the test server and
// returns its URL; t.Cleanup drops it (with any connections left to it).
// Register the closing of what uses it after calling URL, so that it runs
// first. Databases are named trainhook_test_<test>_<random>, so that
// leftovers of a killed run are recognisable.
func URL(t testing.TB) string {
	t.Helper()
	admin := os.Getenv(EnvURL)
	if admin == "" {
		msg := EnvURL + ` is not set: start a test PostgreSQL with eval "$(bash .ci/postgres.sh)" (stop it with bash .ci/postgres.sh stop)`
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	cfg, err := pgx.ParseConfig(admin)
	if err != nil {
		t.Fatalf("%s is not a valid PostgreSQL URL", EnvURL)
	}
	name := dbName(t.Name())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect to the test PostgreSQL server (%s): %v", EnvURL, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("create test database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Errorf("drop test database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		// FORCE ends connections a test left open (PostgreSQL 13 and later).
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})
	return withDatabase(admin, name)
}

// dbName makes a database name from a test name: lower-case letters, digits
// and underscores, within PostgreSQL's 63-byte limit, unique by its suffix.
func dbName(test string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(test) {
		if r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r)) {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	short := b.String()
	if len(short) > 28 {
		short = short[len(short)-28:]
	}
	var rnd [6]byte
	rand.Read(rnd[:])
	return "trainhook_test_" + short + "_" + hex.EncodeToString(rnd[:])
}

// withDatabase returns the admin URL with its database replaced by name. It
// accepts both URL and key=value forms, as pgx does.
func withDatabase(admin, name string) string {
	if u, err := url.Parse(admin); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.Path = "/" + name
		return u.String()
	}
	return admin + " dbname=" + name
}
