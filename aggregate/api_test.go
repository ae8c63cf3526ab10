package aggregate_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strings"
	"testing"
)

// TestBookkeepingNotExported guards the aggregate's bookkeeping. Before,
// package aggregate exported Restore, SetVersion, MarkCommitted and
// Pending, so an application could move an aggregate's version, restore it
// under another identity, or read and edit (or drop) its pending events
// outside the unit of work. keel's repositories and unit of work now reach
// them through internal/aggstate, which applications cannot import. No
// test can call a function that does not exist, so this one reads the
// package's source and fails if any of them comes back as an exported
// function, method or variable.
func TestBookkeepingNotExported(t *testing.T) {
	forbidden := map[string]bool{"Restore": true, "SetVersion": true, "MarkCommitted": true, "Pending": true, "Stamp": true}
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	files := 0
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		files++
		for _, decl := range f.Decls {
			var names []*ast.Ident
			switch d := decl.(type) {
			case *ast.FuncDecl:
				names = append(names, d.Name)
			case *ast.GenDecl:
				for _, spec := range d.Specs {
					if v, ok := spec.(*ast.ValueSpec); ok {
						names = append(names, v.Names...)
					}
				}
			}
			for _, id := range names {
				if forbidden[id.Name] {
					t.Errorf("%s: package aggregate exports %s; aggregate bookkeeping belongs in internal/aggstate", fset.Position(id.Pos()), id.Name)
				}
			}
		}
	}
	if files == 0 {
		t.Fatal("found no source files to check")
	}
}
