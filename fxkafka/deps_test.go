package fxkafka

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestLibraryDoesNotLinkTestOrMetricsPackages keeps users' binaries free of
// a fake broker or a metrics or tracing stack they did not ask for: the
// package's non-test dependencies include no kfake, franz-go, Prometheus,
// OpenTelemetry, or the fxkafkatest, fxkafkaprom and fxkafkaotel packages.
func TestLibraryDoesNotLinkTestOrMetricsPackages(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", ".").CombinedOutput()
	require.NoError(t, err, string(out))
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"github.com/twmb/franz-go", "github.com/prometheus/", "go.opentelemetry.io/", "/fxkafkatest", "/fxkafkaprom", "/fxkafkaotel"} {
			require.NotContains(t, dep, banned, "fxkafka links %s", dep)
		}
	}
}

// TestModuleDoesNotRequireOpenTelemetry keeps OpenTelemetry out of the core
// module's go.mod: fxkafkaotel, a module of its own, brings it to those who
// want it.
func TestModuleDoesNotRequireOpenTelemetry(t *testing.T) {
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Path}}", "all")
	cmd.Env = append(os.Environ(), "GOWORK=off") // the core module alone, as its users build it
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	require.NotContains(t, string(out), "go.opentelemetry.io/")
}
