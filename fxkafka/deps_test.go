package fxkafka

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestLibraryDoesNotLinkTestOrMetricsPackages keeps users' binaries free of
// a fake broker or a metrics stack they did not ask for: the package's
// non-test dependencies include no kfake, franz-go, Prometheus, or the
// fxkafkatest and fxkafkaprom packages.
func TestLibraryDoesNotLinkTestOrMetricsPackages(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", ".").CombinedOutput()
	require.NoError(t, err, string(out))
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"github.com/twmb/franz-go", "github.com/prometheus/", "/fxkafkatest", "/fxkafkaprom"} {
			require.NotContains(t, dep, banned, "fxkafka links %s", dep)
		}
	}
}
