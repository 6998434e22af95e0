package layering

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the graph in docs/architecture.md")

// layers orders the packages (relative to the module): a package may
// import only packages of a lower layer. A package missing here fails the
// test, so a new package gets a place in the architecture on purpose.
var layers = map[string]int{
	"internal/sys":       0,
	"internal/lock":      0,
	"internal/report":    0,
	"internal/failpoint": 0,
	"schedule":           0,
	"cow":                0,
	"zfs":                0,
	"lvm2":               0,
	"zfs/sendstream":     0,
	"internal/loop":      1,
	"internal/blockdev":  1,
	"dm":                 1,
	"retention":          1,
	"merge":              2,
	"lvm":                3,
	"ingest":             3,
	"replicate":          3,
	"pool":               4,
	"metrics":            4,
	"restore":            4,
	"monitor":            5,
	"cmd/dmsnap":         9,
	// Test support: below nothing it tests, above what it sets up.
	"internal/testutil": 2,
}

// stdlibOnly may import nothing but the standard library: the codecs, the
// schedule parser and the zfs, zfs/sendstream and lvm2 bridges are usable
// without the rest of dmsnap.
var stdlibOnly = map[string]bool{"cow": true, "zfs": true, "schedule": true, "zfs/sendstream": true, "lvm2": true}

// rawOnly is the only package that may import golang.org/x/sys/unix or
// unsafe: every raw syscall and pointer cast lives in one place.
const rawOnly = "internal/sys"

type pkg struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
	Standard     bool
}

// list runs go list in dir and returns its packages by path relative to
// the module, without tests/ (test programs, not the product).
func list(t *testing.T, dir string) (module string, pkgs map[string]*pkg) {
	t.Helper()
	out, err := exec.Command("go", "list", "-m").Output()
	if dir != "" {
		cmd := exec.Command("go", "list", "-m")
		cmd.Dir = dir
		out, err = cmd.Output()
	}
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	module = strings.TrimSpace(string(out))
	cmd := exec.Command("go", "list", "-json", module+"/...")
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err = cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v: %s", err, stderr.String())
	}
	pkgs = map[string]*pkg{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		p := &pkg{}
		if err := dec.Decode(p); err != nil {
			t.Fatal(err)
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		if strings.HasPrefix(rel, "tests/") {
			continue
		}
		pkgs[rel] = p
	}
	return module, pkgs
}

// violations checks pkgs against the rules.
func violations(module string, pkgs map[string]*pkg) []string {
	var out []string
	bad := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	local := func(imp string) (string, bool) {
		if imp == module || strings.HasPrefix(imp, module+"/") {
			return strings.TrimPrefix(strings.TrimPrefix(imp, module), "/"), true
		}
		return "", false
	}
	isStd := func(imp string) bool {
		first, _, _ := strings.Cut(imp, "/")
		return !strings.Contains(first, ".")
	}
	for _, name := range sortedNames(pkgs) {
		p := pkgs[name]
		layer, known := layers[name]
		if !known {
			bad("%s: not in the layer table (tests/layering): give it a place in docs/architecture.md", name)
		}
		for _, imp := range p.Imports {
			if (imp == "unsafe" || imp == "golang.org/x/sys/unix") && name != rawOnly {
				bad("%s imports %s: only %s may", name, imp, rawOnly)
			}
			dep, isLocal := local(imp)
			if stdlibOnly[name] && !isStd(imp) && !(isLocal && strings.HasPrefix(dep, "internal/")) {
				bad("%s imports %s: it may import only the standard library and internal helpers", name, imp)
			}
			if !isLocal {
				continue
			}
			if strings.HasPrefix(dep, "cmd/") {
				bad("%s imports %s: nothing imports cmd/", name, dep)
			}
			core := !strings.HasPrefix(name, "cmd/") && name != "monitor" && name != "metrics"
			if core && (dep == "metrics" || dep == "monitor" || strings.HasPrefix(dep, "cmd/")) {
				bad("%s imports %s: core packages never import metrics, monitor or cmd", name, dep)
			}
			if dl, ok := layers[dep]; known && ok && dl >= layer {
				bad("%s (layer %d) imports %s (layer %d): imports point downwards", name, layer, dep, dl)
			}
		}
		for _, imp := range append(append([]string(nil), p.TestImports...), p.XTestImports...) {
			if (imp == "unsafe" || imp == "golang.org/x/sys/unix") && name != rawOnly {
				bad("%s's tests import %s: only %s may (use internal/testutil)", name, imp, rawOnly)
			}
		}
	}
	return out
}

func sortedNames(pkgs map[string]*pkg) []string {
	names := make([]string, 0, len(pkgs))
	for n := range pkgs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// graph renders each package's imports of the module, by layer, highest
// first.
func graph(module string, pkgs map[string]*pkg) string {
	names := sortedNames(pkgs)
	sort.SliceStable(names, func(i, j int) bool { return layers[names[i]] > layers[names[j]] })
	var b strings.Builder
	for _, n := range names {
		var deps []string
		for _, imp := range pkgs[n].Imports {
			if imp == module || strings.HasPrefix(imp, module+"/") {
				deps = append(deps, strings.TrimPrefix(imp, module+"/"))
			}
		}
		sort.Strings(deps)
		fmt.Fprintf(&b, "%-18s → %s\n", n, strings.Join(deps, ", "))
	}
	return b.String()
}

const (
	beginMarker = "<!-- layering:begin (generated by tests/layering; go test ./tests/layering -update) -->\n"
	endMarker   = "<!-- layering:end -->"
)

// TestLayering checks the rules on the real graph, prints it, and keeps
// docs/architecture.md's copy current.
func TestLayering(t *testing.T) {
	module, pkgs := list(t, "")
	g := graph(module, pkgs)
	t.Logf("package graph (imports of the module only):\n%s", g)
	for _, v := range violations(module, pkgs) {
		t.Error(v)
	}
	doc := filepath.Join("..", "..", "docs", "architecture.md")
	data, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	i, j := strings.Index(s, beginMarker), strings.Index(s, endMarker)
	if i < 0 || j < i {
		t.Fatalf("%s has no generated graph between %q and %q", doc, strings.TrimSpace(beginMarker), endMarker)
	}
	want := beginMarker + "```\n" + g + "```\n"
	if s[i:j] == want {
		return
	}
	if !*update {
		t.Fatalf("the graph in %s is stale; run go test ./tests/layering -update", doc)
	}
	if err := os.WriteFile(doc, []byte(s[:i]+want+s[j:]), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestLayeringCatchesViolations runs the same rules over a fixture module
// that breaks each of them once.
func TestLayeringCatchesViolations(t *testing.T) {
	module, pkgs := list(t, filepath.Join("testdata", "bad"))
	got := strings.Join(violations(module, pkgs), "\n")
	for _, want := range []string{
		"cow imports unsafe: only internal/sys may",
		"cow imports cmd/tool: nothing imports cmd/",
		"zfs imports example.com/bad/dm: it may import only the standard library",
		"dm (layer 1) imports lvm (layer 3): imports point downwards",
		"cmd/tool: not in the layer table",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("no violation %q in:\n%s", want, got)
		}
	}
}
