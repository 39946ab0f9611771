package fxkafka

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var envVarName = regexp.MustCompile(`KAFKA_[A-Z0-9_]+`)

// TestConfigDocCommentsNameTheVariablesOfTheirTags keeps the doc comments
// honest: each comment names exactly the variables of the fields it
// documents (itself and the fields declared with it or right after it
// without a comment of their own), as their env tags spell them.
func TestConfigDocCommentsNameTheVariablesOfTheirTags(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "config.go", nil, parser.ParseComments)
	require.NoError(t, err)
	var fields *ast.FieldList
	ast.Inspect(f, func(n ast.Node) bool {
		if ts, ok := n.(*ast.TypeSpec); ok && ts.Name.Name == "Config" {
			fields = ts.Type.(*ast.StructType).Fields
		}
		return fields == nil
	})
	require.NotNil(t, fields)

	var doc string
	var documented []string
	check := func() {
		if documented == nil {
			return
		}
		var want []string
		for _, name := range documented {
			want = append(want, envVars[name])
		}
		got := envVarName.FindAllString(doc, -1)
		slices.Sort(got)
		slices.Sort(want)
		assert.Equal(t, want, slices.Compact(got), "the doc comment of %v names other variables than their env tags", documented)
	}
	for _, field := range fields.List {
		if field.Doc != nil {
			check()
			doc, documented = field.Doc.Text(), nil
		}
		require.NotEmpty(t, doc, "%s has no doc comment", field.Names[0].Name)
		for _, n := range field.Names {
			documented = append(documented, n.Name)
		}
	}
	check()
}

// TestREADMEConfigurationTableNamesTheVariablesOfTheTags: the README's
// configuration table has a row for every Config field, naming the variable
// its env tag names.
func TestREADMEConfigurationTableNamesTheVariablesOfTheTags(t *testing.T) {
	table := readmeBetween(t, "## Configuration\n", "\n## ")

	quoted := regexp.MustCompile("`([^`]+)`")
	rows := map[string]string{} // field -> variable
	for _, line := range strings.Split(table, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			continue
		}
		names := quoted.FindAllStringSubmatch(cells[1], -1)
		vars := quoted.FindAllStringSubmatch(cells[2], -1)
		require.Len(t, vars, len(names), "README row %q: as many variables as fields", line)
		for i, n := range names {
			rows[n[1]] = vars[i][1]
		}
	}
	for _, f := range envFields {
		v, ok := rows[f.name]
		if assert.True(t, ok, "README's configuration table has no row for %s", f.name) {
			assert.Equal(t, f.envVar, v, "README's row for %s", f.name)
		}
		delete(rows, f.name)
	}
	assert.Empty(t, rows, "README rows for fields Config does not have")
}

// TestREADMEListsTheYAMLKeysOfTheTags: the README's list of YAML and JSON
// keys is every Config field's yaml tag, which its json tag repeats.
func TestREADMEListsTheYAMLKeysOfTheTags(t *testing.T) {
	list := readmeBetween(t, "The keys are the `yaml` and `json` tags, exactly (YAML matches case): ", ":\n")
	var listed []string
	for _, m := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(list, -1) {
		listed = append(listed, m[1])
	}
	var tags []string
	ct := reflect.TypeFor[Config]()
	for i := range ct.NumField() {
		f := ct.Field(i)
		y, j := f.Tag.Get("yaml"), f.Tag.Get("json")
		assert.Equal(t, y, j, "%s: yaml and json keys", f.Name)
		tags = append(tags, y)
	}
	assert.Equal(t, tags, listed)
}

// readmeBetween returns the README's text after start, up to end.
func readmeBetween(t *testing.T, start, end string) string {
	t.Helper()
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	_, text, ok := strings.Cut(string(readme), start)
	require.True(t, ok, "README has %q", start)
	text, _, _ = strings.Cut(text, end)
	return text
}
