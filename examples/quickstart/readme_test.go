package main

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// readmeSection is the README heading whose Go block is this program.
const readmeSection = "## A first unit of work"

// TestReadme fails unless the program the README shows under readmeSection
// is main.go byte for byte, so that the README's code always compiles and
// TestQuickstart runs it as written.
func TestReadme(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	program, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	block, err := goBlock(string(readme), readmeSection)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(program), block); diff != "" {
		t.Errorf("README.md %q differs from examples/quickstart/main.go; change both together (-main.go +README):\n%s", readmeSection, diff)
	}
}

// goBlock returns the body of the first ```go fenced block after the line
// heading in a Markdown document, each line ending in a newline.
func goBlock(doc, heading string) (string, error) {
	lines := strings.SplitAfter(doc, "\n")
	i := 0
	for i < len(lines) && strings.TrimRight(lines[i], "\n") != heading {
		i++
	}
	if i == len(lines) {
		return "", fmt.Errorf("README.md has no line %q", heading)
	}
	for i < len(lines) && strings.TrimRight(lines[i], "\n") != "```go" {
		i++
	}
	if i == len(lines) {
		return "", fmt.Errorf("README.md has no ```go block after %q", heading)
	}
	var b strings.Builder
	for _, l := range lines[i+1:] {
		if strings.TrimRight(l, "\n") == "```" {
			return b.String(), nil
		}
		b.WriteString(l)
	}
	return "", fmt.Errorf("README.md: the ```go block after %q is not closed", heading)
}
