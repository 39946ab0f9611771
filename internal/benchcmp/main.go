// Command benchcmp measures fxkafka's pool beside its peers, like for like,
// and prints the README's benchmark tables.
//
//	go run ./internal/benchcmp                          # defaults: 5 rounds of 250ms runs, a few minutes
//	go run ./internal/benchcmp -rounds 5 -benchtime 1s  # the README's table
//	go run ./internal/benchcmp -cases 'RTT=5ms/.*Senders=16'
//
// Synchronous senders (each sends and waits for its acknowledgement): the
// pool (default Config, and Idempotent), one shared sarama SyncProducer,
// franz-go's ProduceSync (idempotent and not) and librdkafka (linger.ms=0,
// idempotent and not), with 1, 16 and 256 senders, against kfake at 0, 1
// and 5 ms of round trip (a delay line on every connection, as
// fxkafkatest.WithLatency) and against librdkafka's mock cluster at 1 and
// 5 ms (its own round trip, 3 brokers, 6 partitions). Asynchronous: one
// producing goroutine, the pool's Produce+Flush (BenchmarkProducePool),
// franz-go's Produce+Flush and a sarama AsyncProducer, idempotent and not, against
// kfake at 0 and 5 ms. Acks from all in-sync replicas everywhere, 100-byte
// values.
//
// benchcmp builds the test binaries of go.fxkafka.dev/fxkafka and of
// go.fxkafka.dev/internal/rdkafka (cgo; without it, the librdkafka columns
// and the mock cluster's rows are left out), then runs every case in a
// process of its own, once per round, each round in a rotated order so that
// drift in the machine's speed spreads over every case, and prints the
// medians: throughput, p50 and p99 send latency, allocations per message,
// and ratios against the best peer and against the SyncProducer.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"
)

func main() {
	var (
		rounds    = flag.Int("rounds", 5, "interleaved rounds; the tables show medians")
		benchtime = flag.String("benchtime", "250ms", "go test -benchtime of each run")
		kfakeRTT  = flag.String("rtt", "0,1,5", "round trips (ms) of the kfake rows")
		mockRTT   = flag.String("mock-rtt", "1,5", "round trips (ms) of the mock cluster's rows; empty for none")
		asyncRTT  = flag.String("async-rtt", "0,5", "round trips (ms) of the asynchronous rows; empty for none")
		senders   = flag.String("senders", "1,16,256", "synchronous sender counts")
		rdkafka   = flag.Bool("rdkafka", true, "build internal/rdkafka (cgo) for librdkafka and its mock cluster")
		only      = flag.String("cases", "", "run only the cases whose name matches this regexp")
	)
	flag.Parse()

	root, err := repoRoot()
	check(err)
	var filter *regexp.Regexp
	if *only != "" {
		filter, err = regexp.Compile(*only)
		check(err)
	}
	m := matrix{
		kfakeRTT: ints(*kfakeRTT),
		mockRTT:  ints(*mockRTT),
		asyncRTT: ints(*asyncRTT),
		senders:  ints(*senders),
	}

	dir, err := os.MkdirTemp("", "benchcmp")
	check(err)
	defer os.RemoveAll(dir)
	bins := map[string]string{}
	var notes []string
	start := time.Now()
	bins[binCore], err = build(root, dir, binCore, "./fxkafka", "")
	check(err)
	m.produce = hasBenchmark(bins[binCore], "BenchmarkProducePool")
	if *rdkafka {
		t0 := time.Now()
		bins[binRdkafka], err = build(root, dir, binRdkafka, "./internal/rdkafka", "")
		if err != nil {
			fmt.Fprintf(os.Stderr, "benchcmp: internal/rdkafka does not build; leaving out librdkafka and its mock cluster:\n%v\n", err)
			notes = append(notes, "internal/rdkafka did not build here: no librdkafka column, no mock cluster rows.")
		} else {
			fmt.Fprintf(os.Stderr, "benchcmp: built internal/rdkafka in %v\n", time.Since(t0).Round(time.Second))
		}
	} else {
		notes = append(notes, "run with -rdkafka=false: no librdkafka column, no mock cluster rows.")
	}
	m.rdkafka = bins[binRdkafka] != ""

	cases := m.cases()
	if filter != nil {
		cases = filterCases(cases, filter)
	}
	if len(cases) == 0 {
		check(fmt.Errorf("no case to run"))
	}
	res := results{}
	var cpu string
	for r := range *rounds {
		for _, c := range rotate(cases, r, *rounds) {
			out, err := runCase(root, bins[c.bin], c, *benchtime)
			if err != nil {
				fmt.Fprintf(os.Stderr, "round %d/%d %s: %v\n", r+1, *rounds, c.name(), err)
				res.fail(c)
				continue
			}
			if cpu == "" {
				cpu = cpuLine(out)
			}
			s, ok := parseSample(out, c.name())
			if !ok {
				fmt.Fprintf(os.Stderr, "round %d/%d %s: no result in\n%s\n", r+1, *rounds, c.name(), out)
				res.fail(c)
				continue
			}
			res.add(c, s)
			fmt.Fprintf(os.Stderr, "round %d/%d %-70s %s\n", r+1, *rounds, c.name(), s)
		}
	}

	fmt.Printf("Medians of %d interleaved rounds, -benchtime %s, %s (GOMAXPROCS %s), %s; %v in all.\n",
		*rounds, *benchtime, cpu, gomaxprocs(), goVersion(), time.Since(start).Round(time.Second))
	fmt.Printf("Command: go run ./internal/benchcmp %s\n", strings.Join(os.Args[1:], " "))
	for _, n := range notes {
		fmt.Println("Note:", n)
	}
	fmt.Println()
	report(os.Stdout, m, res)
}

// repoRoot is the directory of the workspace's go.work: the repository.
func repoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOWORK").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOWORK: %w", err)
	}
	work := strings.TrimSpace(string(out))
	if work == "" || work == "off" {
		return "", fmt.Errorf("run benchcmp inside the fxkafka repository (no go.work found)")
	}
	return filepath.Dir(work), nil
}

// build compiles the test binary of pkg (relative to root) into dir.
func build(root, dir, name, pkg, tags string) (string, error) {
	bin := filepath.Join(dir, name+".test")
	args := []string{"test", "-c", "-o", bin}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	cmd := exec.Command("go", append(args, pkg)...)
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go %s: %w\n%s", strings.Join(cmd.Args[1:], " "), err, out.Bytes())
	}
	return bin, nil
}

// runCase runs one case in a process of its own and returns its output.
// The binary's stderr (librdkafka's logs, a failure) is shown only when the
// run fails.
func runCase(root, bin string, c benchCase, benchtime string) ([]byte, error) {
	cmd := exec.Command(bin, "-test.run", "^$", "-test.bench", c.pattern(), "-test.benchtime", benchtime, "-test.benchmem")
	cmd.Dir = filepath.Join(root, c.pkgDir())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%w\n%s%s", err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.Bytes(), nil
}

// hasBenchmark tells whether the test binary has the top-level benchmark.
func hasBenchmark(bin, name string) bool {
	out, err := exec.Command(bin, "-test.list", "^"+name+"$").Output()
	return err == nil && strings.Contains(string(out), name)
}

func goVersion() string {
	out, err := exec.Command("go", "env", "GOVERSION").Output()
	if err != nil {
		return "go ?"
	}
	return strings.TrimSpace(string(out))
}

func gomaxprocs() string {
	if v := os.Getenv("GOMAXPROCS"); v != "" {
		return v
	}
	return fmt.Sprint(runtime.NumCPU())
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchcmp:", err)
		os.Exit(1)
	}
}
