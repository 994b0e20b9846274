package store

import (
	"testing"
	"testing/fstest"
)

func TestLoadMigrationsRefusesMalformedSets(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files []string
	}{
		{"gap", []string{"0001_a.sql", "0003_c.sql"}},
		{"not from 1", []string{"0002_b.sql"}},
		{"bad name", []string{"1_a.sql"}},
		{"no description", []string{"0001.sql"}},
	} {
		fsys := fstest.MapFS{}
		for _, f := range tc.files {
			fsys["migrations/"+f] = &fstest.MapFile{Data: []byte("SELECT 1;")}
		}
		if _, err := LoadMigrations(fsys); err == nil {
			t.Errorf("%s: loadMigrations accepted %v", tc.name, tc.files)
		}
	}
	ms, err := LoadMigrations(fstest.MapFS{
		"migrations/0001_a.sql": &fstest.MapFile{Data: []byte("SELECT 1;")},
		"migrations/0002_b.sql": &fstest.MapFile{Data: []byte("SELECT 2;")},
	})
	if err != nil || len(ms) != 2 || ms[1] != (Migration{Version: 2, Name: "0002_b.sql", SQL: "SELECT 2;"}) {
		t.Errorf("a well-formed set: %+v, %v", ms, err)
	}
}
