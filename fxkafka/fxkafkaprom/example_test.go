package fxkafkaprom_test

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/fx"

	"go.fxkafka.dev/fxkafka"
	"go.fxkafka.dev/fxkafka/fxkafkaprom"
)

// Add the module next to fxkafka.Module; it registers with the app's
// prometheus.Registerer (here a fresh registry) or the default one.
func Example() {
	reg := prometheus.NewRegistry()
	app := fx.New(
		fxkafka.Module,
		fxkafkaprom.Module,
		fx.Replace(fxkafka.Config{Brokers: []string{"127.0.0.1:1"}}),
		fx.Supply(fx.Annotate(reg, fx.As(new(prometheus.Registerer)))),
		fx.NopLogger,
	)
	if err := app.Start(context.Background()); err != nil {
		panic(err)
	}
	defer app.Stop(context.Background())

	n, err := testutil.GatherAndCount(reg, "fxkafka_producers", "fxkafka_messages_sent_total")
	fmt.Println(n, err)
	// Output: 2 <nil>
}
