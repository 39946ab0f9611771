package fxkafkatest_test

import (
	"fmt"
	"os"
	"testing"
)

// exampleTB is the testing.TB an example can give to code written for
// tests: examples get no *testing.T. It runs the cleanups when finish is
// called and panics where a test would fail.
type exampleTB struct {
	testing.TB // nil: only the methods below are called
	cleanups   []func()
}

func newExampleTB() *exampleTB { return &exampleTB{} }

func (t *exampleTB) Helper()                        {}
func (t *exampleTB) Name() string                   { return "Example" }
func (t *exampleTB) Cleanup(f func())               { t.cleanups = append(t.cleanups, f) }
func (t *exampleTB) Logf(string, ...any)            {}
func (t *exampleTB) Log(...any)                     {}
func (t *exampleTB) Errorf(format string, a ...any) { panic(fmt.Sprintf(format, a...)) }
func (t *exampleTB) Fatalf(format string, a ...any) { panic(fmt.Sprintf(format, a...)) }
func (t *exampleTB) Fatal(a ...any)                 { panic(fmt.Sprint(a...)) }
func (t *exampleTB) FailNow()                       { panic("test failed") }

func (t *exampleTB) TempDir() string {
	dir, err := os.MkdirTemp("", "fxkafkatest-example")
	if err != nil {
		panic(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func (t *exampleTB) finish() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
}
