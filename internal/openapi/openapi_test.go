package openapi_test

import (
	"context"

	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/trainhook/trainhook/internal/openapi"
)

const module = "github.com/trainhook/trainhook"

func load(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(openapi.Document())
	if err != nil {
		t.Fatalf("load the document: %v", err)
	}
	return doc
}

// The document is valid OpenAPI 3.1, with valid JSON Schema 2020-12 schemas.
func TestDocumentIsValidOpenAPI31(t *testing.T) {
	doc := load(t)
	if !doc.IsOpenAPI31OrLater() {
		t.Fatalf("openapi is %q, want 3.1.x", doc.OpenAPI)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("the document is not valid: %v", err)
	}
}

// route is one pattern registered on an http.ServeMux somewhere in the
// server's code.
type route struct {
	method, path string // method "" serves every method
	at           string // file:line
}

// Every route the server registers under /api/, and every operations
// endpoint, is in the document with its method; and everything the document
// lists is registered. The routes are read from the code (every Handle and
// HandleFunc call with a constant pattern in the server's packages), so a
// route added anywhere shows up here until the document describes it.
func TestEveryRouteIsDocumented(t *testing.T) {
	doc := load(t)
	routes := registeredRoutes(t)

	// The scan must see the routes it exists to check, or it checks nothing.
	for _, want := range []string{"POST /api/models", "GET /readyz", " /api/webhooks/replicate/completed", "GET " + openapi.Path} {
		if !slices.ContainsFunc(routes, func(r route) bool { return r.method+" "+r.path == want }) {
			t.Fatalf("the scan of the code did not find the route %q; found %v", want, routes)
		}
	}

	registered := map[string]bool{} // "METHOD path" in the document's form
	for _, r := range routes {
		if !documented(r.path) {
			continue
		}
		p := docPath(r.path)
		item := doc.Paths.Find(p)
		if item == nil || doc.Paths.Value(p) == nil {
			t.Errorf("%s: route %q is not in the document (add path %q to internal/openapi/openapi.json)", r.at, strings.TrimSpace(r.method+" "+r.path), p)
			continue
		}
		if r.method == "" {
			if len(item.Operations()) == 0 {
				t.Errorf("%s: route %q has no operation in the document", r.at, r.path)
			}
			for m := range item.Operations() {
				registered[m+" "+p] = true
			}
			continue
		}
		if item.GetOperation(r.method) == nil {
			t.Errorf("%s: route %q is in the document without its %s operation", r.at, r.method+" "+r.path, r.method)
		}
		registered[r.method+" "+p] = true
	}
	for p, item := range doc.Paths.Map() {
		for m := range item.Operations() {
			if !registered[m+" "+p] {
				t.Errorf("the document lists %s %s, which the server does not register", m, p)
			}
		}
	}
}

// documented says whether a route belongs in the document: the JSON API and
// webhook intake under /api/, and the operations endpoints. The dashboard's
// HTML pages are not an API. Subtree patterns ending in "/" are fallbacks
// that answer 404 or 405 for what is not registered.
func documented(path string) bool {
	if strings.HasSuffix(path, "/") {
		return false
	}
	return strings.HasPrefix(path, "/api/") || path == "/healthz" || path == "/readyz" || path == "/metrics"
}

// docPath turns a ServeMux path into the document's: {$} (exact match with a
// trailing slash) becomes the slash, {name...} becomes {name}.
func docPath(p string) string {
	p = strings.TrimSuffix(p, "{$}")
	return strings.ReplaceAll(p, "...}", "}")
}

// registeredRoutes reads every mux.Handle and mux.HandleFunc call of the
// server's code: the packages under internal/ and cmd/trainhook, less the
// Replicate simulator, which serves Replicate's API, not trainhook's.
func registeredRoutes(t *testing.T) []route {
	t.Helper()
	root := moduleRoot(t)
	fset := token.NewFileSet()
	pkgs := map[string][]*ast.File{} // directory → files
	for _, top := range []string{"internal", filepath.Join("cmd", "trainhook")} {
		err := filepath.WalkDir(filepath.Join(root, top), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if d.Name() == "testdata" || d.Name() == "fakereplicate" {
					return filepath.SkipDir
				}
				return nil
			}
			if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				return err
			}
			pkgs[filepath.Dir(path)] = append(pkgs[filepath.Dir(path)], f)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	c := &consts{root: root, pkgs: pkgs, vals: map[string]map[string]ast.Expr{}}
	var routes []route
	for dir, files := range pkgs {
		for _, f := range files {
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok || len(call.Args) != 2 {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || (sel.Sel.Name != "Handle" && sel.Sel.Name != "HandleFunc") {
					return true
				}
				pattern, ok := c.eval(dir, f, call.Args[0])
				if !ok {
					return true // not a string constant: slog's Handle(ctx, record), say
				}
				r := route{at: fset.Position(call.Pos()).String()}
				r.method, r.path, _ = strings.Cut(pattern, " ")
				if r.path == "" { // no method in the pattern
					r.method, r.path = "", pattern
				}
				routes = append(routes, r)
				return true
			})
		}
	}
	sort.Slice(routes, func(i, j int) bool { return routes[i].path+routes[i].method < routes[j].path+routes[j].method })
	return routes
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// consts evaluates constant string expressions: literals, "+" and the
// package-level constants of the module's packages, here or imported.
type consts struct {
	root string
	pkgs map[string][]*ast.File
	vals map[string]map[string]ast.Expr // directory → const name → its value
}

func (c *consts) eval(dir string, f *ast.File, e ast.Expr) (string, bool) {
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind != token.STRING {
			return "", false
		}
		s, err := strconv.Unquote(e.Value)
		return s, err == nil
	case *ast.ParenExpr:
		return c.eval(dir, f, e.X)
	case *ast.BinaryExpr:
		if e.Op != token.ADD {
			return "", false
		}
		a, ok1 := c.eval(dir, f, e.X)
		b, ok2 := c.eval(dir, f, e.Y)
		return a + b, ok1 && ok2
	case *ast.Ident:
		if v := c.lookup(dir, e.Name); v != nil {
			return c.eval(dir, f, v)
		}
	case *ast.SelectorExpr:
		pkg, ok := e.X.(*ast.Ident)
		if !ok {
			return "", false
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			name := filepath.Base(path)
			if imp.Name != nil {
				name = imp.Name.Name
			}
			rel, inModule := strings.CutPrefix(path, module+"/")
			if name != pkg.Name || !inModule {
				continue
			}
			other := filepath.Join(c.root, filepath.FromSlash(rel))
			if v := c.lookup(other, e.Sel.Name); v != nil {
				return c.eval(other, c.anyFile(other), v)
			}
		}
	}
	return "", false
}

func (c *consts) anyFile(dir string) *ast.File {
	if fs := c.files(dir); len(fs) > 0 {
		return fs[0]
	}
	return &ast.File{}
}

func (c *consts) files(dir string) []*ast.File {
	if fs, ok := c.pkgs[dir]; ok {
		return fs
	}
	// A package outside the scan (an imported one): parse it now.
	entries, _ := os.ReadDir(dir)
	var fs []*ast.File
	for _, en := range entries {
		if n := en.Name(); strings.HasSuffix(n, ".go") && !strings.HasSuffix(n, "_test.go") {
			if f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(dir, n), nil, 0); err == nil {
				fs = append(fs, f)
			}
		}
	}
	c.pkgs[dir] = fs
	return fs
}

// lookup finds a package-level constant's value expression.
func (c *consts) lookup(dir, name string) ast.Expr {
	if c.vals[dir] == nil {
		m := map[string]ast.Expr{}
		for _, f := range c.files(dir) {
			for _, d := range f.Decls {
				gd, ok := d.(*ast.GenDecl)
				if !ok || gd.Tok != token.CONST {
					continue
				}
				for _, spec := range gd.Specs {
					vs := spec.(*ast.ValueSpec)
					for i, n := range vs.Names {
						if i < len(vs.Values) {
							m[n.Name] = vs.Values[i]
						}
					}
				}
			}
		}
		c.vals[dir] = m
	}
	return c.vals[dir][name]
}

// The server serves the document it embeds.
func TestHandlerServesTheDocument(t *testing.T) {
	rec := &recorder{header: http.Header{}}
	openapi.Handler().ServeHTTP(rec, nil)
	if rec.code != 0 && rec.code != http.StatusOK || rec.header.Get("Content-Type") != "application/json" || string(rec.body) != string(openapi.Document()) {
		t.Fatalf("code %d, content type %q, %d bytes", rec.code, rec.header.Get("Content-Type"), len(rec.body))
	}
}

type recorder struct {
	header http.Header
	code   int
	body   []byte
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) WriteHeader(code int)        { r.code = code }
func (r *recorder) Write(p []byte) (int, error) { r.body = append(r.body, p...); return len(p), nil }
