package store

import (
	"fmt"
	"io/fs"
	"strconv"
	"strings"
)

// Migration is one schema change of a store: a plain SQL file named
// NNNN_what.sql, numbered from 1 without gaps. A released file is never
// edited: a change is a new file. Both stores keep the same numbers.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// LoadMigrations reads migrations/*.sql from fsys (a store's embedded
// files), in version order. A malformed set is a bug in the binary.
func LoadMigrations(fsys fs.FS) ([]Migration, error) {
	names, err := fs.Glob(fsys, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var ms []Migration
	for _, path := range names { // fs.Glob returns names sorted
		name := strings.TrimPrefix(path, "migrations/")
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || len(num) != 4 {
			return nil, fmt.Errorf("migration %s: name must be NNNN_description.sql", name)
		}
		if v != len(ms)+1 {
			return nil, fmt.Errorf("migration %s: want version %d (numbers start at 1, without gaps)", name, len(ms)+1)
		}
		b, err := fs.ReadFile(fsys, path)
		if err != nil {
			return nil, err
		}
		ms = append(ms, Migration{Version: v, Name: name, SQL: string(b)})
	}
	return ms, nil
}
