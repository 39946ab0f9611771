// Command benchcmp runs fxkafka's send benchmarks in interleaved rounds and
// prints the medians as a table of ratios: the pool against one shared
// sarama SyncProducer and franz-go's ProduceSync, measured in the same run.
//
//	go run ./internal/benchcmp                # 5 rounds of 1s runs
//	go run ./internal/benchcmp -rounds 9 -benchtime 2s
//
// Each round runs every implementation at every sender count once, in a
// rotating order, so that drift in the machine's speed spreads evenly.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

var (
	impls   = []string{"pool", "syncproducer", "franz-go", "pool-idempotent"}
	senders = []int{1, 16, 256}
	lineRE  = regexp.MustCompile(`^Benchmark\S+\s+\d+\s+([\d.]+) ns/op\s+([\d.]+) msgs/s\s+([\d.]+) B/op\s+([\d.]+) allocs/op`)
	routeRE = regexp.MustCompile(`^BenchmarkRoute\S*\s+\d+\s+([\d.]+) ns/op\s+([\d.]+) B/op\s+([\d.]+) allocs/op`)
)

type sample struct{ rate, allocs float64 }

func main() {
	rounds := flag.Int("rounds", 5, "interleaved rounds; the table shows medians")
	benchtime := flag.String("benchtime", "1s", "go test -benchtime of each run")
	flag.Parse()

	dir, err := os.MkdirTemp("", "benchcmp")
	check(err)
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "fxkafka.test")
	build := exec.Command("go", "test", "-c", "-o", bin, "./fxkafka")
	build.Stderr = os.Stderr
	check(build.Run())

	results := map[string][]sample{}
	var cases []string
	for _, n := range senders {
		for _, impl := range impls {
			cases = append(cases, fmt.Sprintf("Impl=%s/Senders=%d", impl, n))
		}
	}
	for r := range *rounds {
		for i := range cases {
			c := cases[(i+r)%len(cases)]
			out := run(bin, "^BenchmarkSend$/^"+regexp.QuoteMeta(c)+"$", *benchtime)
			for _, line := range lines(out) {
				if m := lineRE.FindStringSubmatch(line); m != nil {
					results[c] = append(results[c], sample{rate: num(m[2]), allocs: num(m[4])})
				}
			}
			fmt.Fprintf(os.Stderr, "round %d/%d %-40s %v\n", r+1, *rounds, c, results[c][len(results[c])-1])
		}
	}
	var routeNs, routeAllocs []float64
	for range *rounds {
		for _, line := range lines(run(bin, "^BenchmarkRoute$", *benchtime)) {
			if m := routeRE.FindStringSubmatch(line); m != nil {
				routeNs, routeAllocs = append(routeNs, num(m[1])), append(routeAllocs, num(m[3]))
			}
		}
	}

	med := func(c string, f func(sample) float64) float64 {
		var xs []float64
		for _, s := range results[c] {
			xs = append(xs, f(s))
		}
		return median(xs)
	}
	rate := func(s sample) float64 { return s.rate }
	allocs := func(s sample) float64 { return s.allocs }
	fmt.Printf("medians of %d interleaved rounds, -benchtime %s; msgs/s\n\n", *rounds, *benchtime)
	fmt.Println("| senders | pool | SyncProducer | franz-go | pool ÷ SyncProducer | pool ÷ franz-go | idempotent pool | idempotent ÷ pool | allocs/send pool, SyncProducer |")
	fmt.Println("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, n := range senders {
		c := func(impl string) string { return fmt.Sprintf("Impl=%s/Senders=%d", impl, n) }
		pool, sp, fr, idem := med(c("pool"), rate), med(c("syncproducer"), rate), med(c("franz-go"), rate), med(c("pool-idempotent"), rate)
		fmt.Printf("| %d | %.0f | %.0f | %.0f | %.2f | %.2f | %.0f | %.2f | %.0f, %.0f |\n",
			n, pool, sp, fr, pool/sp, pool/fr, idem, idem/pool, med(c("pool"), allocs), med(c("syncproducer"), allocs))
	}
	fmt.Printf("\nrouting decision (BenchmarkRoute): %.1f ns, %.0f allocs\n", median(routeNs), median(routeAllocs))
}

func run(bin, bench, benchtime string) []byte {
	cmd := exec.Command(bin, "-test.run", "^$", "-test.bench", bench, "-test.benchtime", benchtime, "-test.benchmem")
	cmd.Dir = "fxkafka"
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	check(cmd.Run())
	return out.Bytes()
}

func lines(b []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		out = append(out, strings.TrimSpace(sc.Text()))
	}
	return out
}

func num(s string) float64 {
	f, err := strconv.ParseFloat(s, 64)
	check(err)
	return f
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	xs = slices.Clone(xs)
	slices.Sort(xs)
	if len(xs)%2 == 1 {
		return xs[len(xs)/2]
	}
	return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchcmp:", err)
		os.Exit(1)
	}
}
