package fxkafka

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// metricsModules are module paths a service must not get by importing only
// fxkafka: Prometheus and OpenTelemetry come with the plugins fxkafkaprom
// and fxkafkaotel, which are modules of their own.
var metricsModules = []string{
	"github.com/prometheus/",
	"go.opentelemetry.io/",
	"go.fxkafka.dev/fxkafka/fxkafkaprom",
	"go.fxkafka.dev/fxkafka/fxkafkaotel",
}

// TestAModuleImportingOnlyFxkafkaGetsNoMetricsOrTracingModule builds a
// throwaway module that imports go.fxkafka.dev/fxkafka (replaced by this
// repository) and checks its module graph and its packages. It runs
// offline, from the module cache the build of this test filled
// (GOPROXY=off, GOFLAGS=-mod=mod), and outside go.work (GOWORK=off), which
// would put the plugins in the graph.
func TestAModuleImportingOnlyFxkafkaGetsNoMetricsOrTracingModule(t *testing.T) {
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	dir := t.TempDir()
	write := func(name, content string) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600))
	}
	write("go.mod", "module example.com/service\n\ngo 1.26.0\n\n"+
		"require go.fxkafka.dev v0.0.0\n\nreplace go.fxkafka.dev => "+root+"\n")
	// fxkafka's go.sum holds every checksum this module can need: its
	// graph is fxkafka's.
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	require.NoError(t, err)
	write("go.sum", string(sum))
	write("main.go", "package main\n\nimport _ \"go.fxkafka.dev/fxkafka\"\n\nfunc main() {}\n")

	run := func(args ...string) string {
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOPROXY=off", "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "go %s:\n%s", strings.Join(args, " "), out)
		return string(out)
	}
	graph := run("mod", "graph")
	require.Contains(t, graph, "example.com/service go.fxkafka.dev@v0.0.0", "the graph is the throwaway module's")
	deps := run("list", "-deps", "-test=false", "-f", "{{with .Module}}{{.Path}}{{end}}", ".")
	require.Contains(t, deps, "github.com/IBM/sarama", "the package list is fxkafka's")
	for _, line := range strings.Split(graph+deps, "\n") {
		for _, banned := range metricsModules {
			require.NotContains(t, line, banned, "a module importing only fxkafka gets %s", banned)
		}
	}
}
