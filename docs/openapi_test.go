package docs_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// registeredRoute is a route cmd/nanomdm registers on its mux.
type registeredRoute struct {
	pattern string          // as registered, without a method
	methods map[string]bool // methods the route allows; empty = any
	pos     string          // file:line of the registration
}

// httpMethods maps net/http's method constants to methods.
var httpMethods = map[string]string{
	"MethodGet": "GET", "MethodHead": "HEAD", "MethodPost": "POST", "MethodPut": "PUT",
	"MethodPatch": "PATCH", "MethodDelete": "DELETE", "MethodConnect": "CONNECT",
	"MethodOptions": "OPTIONS", "MethodTrace": "TRACE",
}

// serverRoutes reads the routes cmd/nanomdm registers from its source:
// every call NAME.Handle(PATTERN, …) or NAME.HandleFunc(PATTERN, …) whose
// receiver's name contains "mux". PATTERN must be a string literal
// ("/path", "/prefix/" or Go's "METHOD /path"); the methods of a route are
// the method in its pattern, or else every http.MethodX named in the
// call's other arguments (the methods middleware), or else any.
//
// Routes registered only under a flag are included: the document covers
// every route the server can serve.
func serverRoutes(t *testing.T) map[string]*registeredRoute {
	t.Helper()
	dir := repoFile(t, "cmd/nanomdm")
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatalf("listing %s: %v", dir, err)
	}
	fset := token.NewFileSet()
	routes := map[string]*registeredRoute{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatalf("parsing %s: %v", f, err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) < 2 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || (sel.Sel.Name != "Handle" && sel.Sel.Name != "HandleFunc") {
				return true
			}
			recv, ok := sel.X.(*ast.Ident)
			if !ok || !strings.Contains(strings.ToLower(recv.Name), "mux") {
				return true
			}
			pos := fset.Position(call.Pos())
			where := filepath.Base(pos.Filename) + ":" + strconv.Itoa(pos.Line)
			lit, ok := call.Args[0].(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				t.Errorf("%s: route pattern is not a string literal; this test reads patterns from the source", where)
				return true
			}
			pattern, _ := strconv.Unquote(lit.Value)
			methods := map[string]bool{}
			if m, p, ok := strings.Cut(pattern, " "); ok {
				methods[m] = true
				pattern = strings.TrimSpace(p)
			} else {
				for _, arg := range call.Args[1:] {
					ast.Inspect(arg, func(n ast.Node) bool {
						if s, ok := n.(*ast.SelectorExpr); ok {
							if x, ok := s.X.(*ast.Ident); ok && x.Name == "http" && httpMethods[s.Sel.Name] != "" {
								methods[httpMethods[s.Sel.Name]] = true
							}
						}
						return true
					})
				}
			}
			if r, ok := routes[pattern]; ok {
				// Registered in several branches: any-method wins, else the union.
				if len(r.methods) == 0 || len(methods) == 0 {
					r.methods = map[string]bool{}
				} else {
					for m := range methods {
						r.methods[m] = true
					}
				}
				return true
			}
			routes[pattern] = &registeredRoute{pattern: pattern, methods: methods, pos: where}
			return true
		})
	}
	if routes["/mdm"] == nil || routes["/version"] == nil {
		t.Fatalf("found routes %v in %s, which lacks /mdm or /version: the registration code changed shape?", keysOfRoutes(routes), dir)
	}
	return routes
}

func keysOfRoutes(m map[string]*registeredRoute) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

var pathParam = regexp.MustCompile(`\{[^}]*\}`)

// routeKey makes registered patterns and documented paths comparable: a
// parameter becomes {}, and a registered subtree "/prefix/" matches a
// documented "/prefix/{param}".
func routeKey(p string, registered bool) string {
	p = pathParam.ReplaceAllString(p, "{}")
	if registered && len(p) > 1 && strings.HasSuffix(p, "/") {
		p += "{}"
	}
	return p
}

// openAPIMethods are the operation keys of an OpenAPI path item.
var openAPIMethods = map[string]bool{
	"get": true, "put": true, "post": true, "delete": true, "options": true, "head": true, "patch": true, "trace": true,
}

// documentedOp is one operation of docs/openapi.yaml.
type documentedOp struct {
	path, method string // method upper case
	codes        map[string]bool
	basicAuth    bool
	device       bool
	line         int
}

// loadOpenAPI parses docs/openapi.yaml and returns its operations by
// route key, checking the document's structure on the way.
func loadOpenAPI(t *testing.T) (map[string][]*documentedOp, string) {
	t.Helper()
	src := string(readRepoFile(t, "docs/openapi.yaml"))
	doc, err := parseYAMLSubset(src)
	if err != nil {
		t.Fatalf("docs/openapi.yaml: %v", err)
	}
	if v := doc.get("openapi"); v == nil || !strings.HasPrefix(v.scalar, "3.") {
		t.Fatalf("docs/openapi.yaml: want openapi: 3.x at the top")
	}
	for _, k := range []string{"info", "paths", "components"} {
		if doc.get(k) == nil {
			t.Errorf("docs/openapi.yaml: no %s", k)
		}
	}
	// Every reference resolves.
	for _, m := range regexp.MustCompile(`\$ref:\s*'#/([^']+)'`).FindAllStringSubmatch(src, -1) {
		if doc.get(strings.Split(m[1], "/")...) == nil {
			t.Errorf("docs/openapi.yaml: $ref #/%s resolves to nothing", m[1])
		}
	}
	if doc.get("components", "securitySchemes", "basicAuth", "scheme") == nil {
		t.Errorf("docs/openapi.yaml: no basicAuth security scheme")
	}

	ops := map[string][]*documentedOp{}
	opIDs := map[string]int{}
	paths := doc.get("paths")
	for _, p := range paths.keys {
		item := paths.child[p]
		if !strings.HasPrefix(p, "/") {
			t.Errorf("docs/openapi.yaml:%d: path %q does not start with /", item.line, p)
		}
		for _, m := range item.keys {
			if !openAPIMethods[m] {
				continue
			}
			opNode := item.child[m]
			op := &documentedOp{path: p, method: strings.ToUpper(m), codes: map[string]bool{}, line: opNode.line}
			if id := opNode.get("operationId"); id == nil {
				t.Errorf("docs/openapi.yaml:%d: %s %s has no operationId", op.line, op.method, p)
			} else if prev, dup := opIDs[id.scalar]; dup {
				t.Errorf("docs/openapi.yaml:%d: operationId %q also used on line %d", op.line, id.scalar, prev)
			} else {
				opIDs[id.scalar] = op.line
			}
			resp := opNode.get("responses")
			if resp == nil || len(resp.keys) == 0 {
				t.Errorf("docs/openapi.yaml:%d: %s %s has no responses", op.line, op.method, p)
				continue
			}
			for _, code := range resp.keys {
				if code != "default" && !regexp.MustCompile(`^[1-5][0-9][0-9]$`).MatchString(code) {
					t.Errorf("docs/openapi.yaml:%d: %s %s: response key %q is not a status code", resp.line, op.method, p, code)
				}
				if r := resp.child[code]; r.get("$ref") == nil && r.get("description") == nil {
					t.Errorf("docs/openapi.yaml:%d: %s %s %s: no description", r.line, op.method, p, code)
				}
				op.codes[code] = true
			}
			if sec := opNode.get("security"); sec != nil {
				for _, it := range sec.items {
					if strings.HasPrefix(it, "basicAuth:") {
						op.basicAuth = true
					}
				}
			}
			if tags := opNode.get("tags"); tags != nil && strings.Contains(tags.scalar, "device") {
				op.device = true
			}
			key := routeKey(p, false)
			ops[key] = append(ops[key], op)
		}
	}
	return ops, src
}

// requiredStatus lists, per documented path and method, the status codes
// the handlers answer (SPEC §2 and the operations guide); the document
// must list at least these. Codes a probe against the running server sees
// are checked too (TestOpenAPIProbe).
var requiredStatus = map[string]map[string][]string{
	"/mdm":                {"PUT": {"200", "400", "408", "410", "413", "500"}, "POST": {"200", "400", "408", "410", "413", "500"}},
	"/checkin":            {"PUT": {"200", "400", "408", "410", "413", "500"}, "POST": {"200", "400", "408", "410", "413", "500"}},
	"/authproxy/{path}":   {"GET": authProxyStatus, "POST": authProxyStatus, "PUT": authProxyStatus, "DELETE": authProxyStatus},
	"/v1/enqueue":         {"PUT": {"200", "207", "400", "401", "405", "409", "413", "500"}, "POST": {"200", "207", "400", "401", "405", "409", "413", "500"}},
	"/v1/enqueue/{ids}":   {"PUT": {"200", "207", "400", "401", "405", "409", "413", "500"}, "POST": {"200", "207", "400", "401", "405", "409", "413", "500"}, "GET": {"200", "207", "400", "401", "405", "409", "413", "500"}},
	"/v1/push/{ids}":      {"GET": {"200", "207", "400", "401", "405", "500"}, "POST": {"200", "207", "400", "401", "405", "500"}},
	"/v1/pushcert":        {"PUT": {"200", "400", "401", "405", "413", "500"}, "GET": {"200", "401", "404", "405", "500"}},
	"/v1/escrowkeyunlock": {"POST": {"200", "400", "401", "405", "413", "500", "502"}},
	"/migration":          {"PUT": {"200", "400", "401", "405", "413", "500"}, "POST": {"200", "400", "401", "405", "413", "500"}},
	"/version":            {"GET": {"200"}},
	// Enrollment (operations guide, "Enrollment: profile and embedded SCEP").
	"/mdm/enroll":        {"GET": {"200", "403", "405", "500", "503"}},
	"/scep":              {"GET": {"200", "400", "413", "500"}, "POST": {"200", "400", "405", "413", "500"}},
	"/v1/scep/challenge": {"POST": {"200", "401", "405", "500"}},
	// Inspection, metrics and health (docs/visibility.md).
	"/v1/enrollments":                   {"GET": {"200", "400", "401", "405", "500"}},
	"/v1/enrollments/{id}/queue":        {"GET": {"200", "400", "401", "404", "405", "500"}, "DELETE": {"200", "400", "401", "404", "405", "500"}},
	"/v1/enrollments/{id}/queue/{uuid}": {"DELETE": {"200", "400", "401", "404", "405", "500"}},
	"/v1/commands/{uuid}/results":       {"GET": {"200", "400", "401", "405", "500"}},
	"/metrics":                          {"GET": {"200", "401", "405"}},
	"/healthz":                          {"GET": {"200"}},
	"/readyz":                           {"GET": {"200", "503"}},
	// The operator console (operations guide, "Operator console").
	"/ui/{page}": {"GET": {"200", "303", "401", "404", "429", "500"}, "POST": {"303", "400", "401", "403", "404", "413", "429", "500"}},
}

var authProxyStatus = []string{"400", "403", "413", "500", "502"}

// publicPaths need no authentication at all.
var publicPaths = map[string]bool{"/version": true, "/healthz": true, "/readyz": true, "/mdm/enroll": true}

// TestOpenAPIRoutes checks docs/openapi.yaml against the server: every
// registered route is documented with the methods it allows, every
// documented path is registered, and every operation lists the status
// codes its handler answers.
func TestOpenAPIRoutes(t *testing.T) {
	ops, _ := loadOpenAPI(t)
	routes := serverRoutes(t)

	for _, r := range routes {
		key := routeKey(r.pattern, true)
		docOps := ops[key]
		if len(docOps) == 0 {
			t.Errorf("route %q (cmd/nanomdm/%s) is not documented in docs/openapi.yaml", r.pattern, r.pos)
			continue
		}
		if len(r.methods) > 0 {
			var documented, allowed []string
			for _, op := range docOps {
				documented = append(documented, op.method)
			}
			for m := range r.methods {
				allowed = append(allowed, m)
			}
			sort.Strings(documented)
			sort.Strings(allowed)
			if strings.Join(documented, ",") != strings.Join(allowed, ",") {
				t.Errorf("route %q allows %v (cmd/nanomdm/%s), docs/openapi.yaml documents %v", r.pattern, allowed, r.pos, documented)
			}
			for _, op := range docOps {
				if !op.codes["405"] {
					t.Errorf("docs/openapi.yaml:%d: %s %s: the route answers other methods 405; list it", op.line, op.method, op.path)
				}
			}
		}
	}
	registeredKeys := map[string]bool{}
	for _, r := range routes {
		registeredKeys[routeKey(r.pattern, true)] = true
	}
	for key, docOps := range ops {
		if !registeredKeys[key] {
			t.Errorf("docs/openapi.yaml:%d: path %s is not registered by cmd/nanomdm (registered: %v)", docOps[0].line, docOps[0].path, keysOfRoutes(routes))
		}
	}

	for key, docOps := range ops {
		for _, op := range docOps {
			if op.basicAuth && !op.codes["401"] {
				t.Errorf("docs/openapi.yaml:%d: %s %s uses Basic auth and does not list 401", op.line, op.method, op.path)
			}
			if op.basicAuth && !op.codes["429"] {
				t.Errorf("docs/openapi.yaml:%d: %s %s uses Basic auth and does not list 429 (-api-auth-fail-limit lock-out)", op.line, op.method, op.path)
			}
			if op.device && op.codes["401"] {
				t.Errorf("docs/openapi.yaml:%d: %s %s is a device endpoint and lists 401: devices may unenroll on 401, these never answer it", op.line, op.method, op.path)
			}
			if !op.device && !op.basicAuth && !publicPaths[op.path] {
				t.Errorf("docs/openapi.yaml:%d: %s %s is neither a device endpoint nor Basic-auth", op.line, op.method, op.path)
			}
			want, ok := requiredStatus[op.path][op.method]
			if !ok {
				t.Errorf("docs/openapi.yaml:%d: %s %s has no entry in requiredStatus of this test: add the codes its handler answers", op.line, op.method, op.path)
				continue
			}
			for _, code := range want {
				if !op.codes[code] {
					t.Errorf("docs/openapi.yaml:%d: %s %s does not list %s, which its handler answers", op.line, op.method, op.path, code)
				}
			}
		}
		_ = key
	}
	for path, methods := range requiredStatus {
		for m := range methods {
			found := false
			for _, op := range ops[routeKey(path, false)] {
				found = found || op.method == m
			}
			if !found {
				t.Errorf("docs/openapi.yaml does not document %s %s", m, path)
			}
		}
	}
}

// TestYAMLSubsetParser checks the parser the OpenAPI test relies on.
func TestYAMLSubsetParser(t *testing.T) {
	doc, err := parseYAMLSubset("a: 1\nb:\n  c: 'x'\n  d: |\n    text: not a key\n\n    more\n  l:\n    - one: 1\n      two: 2\n    - three\n  '200':\n    e: \"q\"\n")
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	for _, tc := range []struct {
		path []string
		want string
	}{
		{[]string{"a"}, "1"},
		{[]string{"b", "c"}, "x"},
		{[]string{"b", "d"}, "|"},
		{[]string{"b", "200", "e"}, "q"},
	} {
		if n := doc.get(tc.path...); n == nil || n.scalar != tc.want {
			t.Errorf("get(%v) = %+v, want scalar %q", tc.path, n, tc.want)
		}
	}
	if got := doc.get("b", "l").items; strings.Join(got, "|") != "one: 1|three" {
		t.Errorf("list items %q, want [one: 1 three]", got)
	}
	if got := doc.get("b").keys; strings.Join(got, ",") != "c,d,l,200" {
		t.Errorf("keys %v, want c,d,l,200", got)
	}
	for _, bad := range []string{"a: 1\na: 2\n", "a:\n\tb: 1\n", "a:\n  just text\n", "a:\n  - x\n  b: 1\n"} {
		if _, err := parseYAMLSubset(bad); err == nil {
			t.Errorf("parse(%q) succeeded, want an error", bad)
		}
	}
	if _, err := os.Stat(repoFile(t, "docs/openapi.yaml")); err != nil {
		t.Errorf("docs/openapi.yaml: %v", err)
	}
}
