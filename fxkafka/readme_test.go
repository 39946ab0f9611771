package fxkafka

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestREADMESnippetsAreCompiledExamples keeps the README honest: every line
// of its Go snippets must appear in the compiled test files of this module
// or of the plugins' (the Example functions and the tests they mirror), so a
// snippet cannot drift from the API.
func TestREADMESnippetsAreCompiledExamples(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	var sources strings.Builder
	// The plugins' tests are read as text, not linked: their snippets are
	// compiled in their own modules.
	for _, pattern := range []string{"*_test.go", "fxkafkatest/*_test.go", "fxkafkaotel/*_test.go", "fxkafkaprom/*_test.go"} {
		files, err := filepath.Glob(pattern)
		require.NoError(t, err)
		for _, f := range files {
			b, err := os.ReadFile(f)
			require.NoError(t, err)
			sources.Write(b)
		}
	}
	known := map[string]bool{}
	for _, line := range strings.Split(sources.String(), "\n") {
		known[strings.TrimSpace(line)] = true
	}
	blocks := regexp.MustCompile("(?s)```go\n(.*?)```").FindAllStringSubmatch(string(readme), -1)
	require.NotEmpty(t, blocks)
	for _, b := range blocks {
		for _, line := range strings.Split(b[1], "\n") {
			line = strings.TrimSpace(line)
			if line == "" {
				continue
			}
			require.True(t, known[line], "README line not in any example or test:\n%s", line)
		}
	}
}
