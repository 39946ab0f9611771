package fxkafka

import (
	"go.uber.org/fx"
	"go.uber.org/zap"
)

// Module provides a [Config] read from the environment ([ConfigFromEnv]), a
// [*ProducerPool] built from it, and the pool as a [Producer]. The pool is
// closed by the application's OnStop; OnStart does not dial, so the
// application starts while Kafka is down.
//
// If the application provides a *zap.Logger, the pool logs to it; otherwise
// it logs nothing. Override the configuration with
// fx.Replace(fxkafka.Config{...}), or adjust the environment's with
// fx.Decorate(func(c fxkafka.Config) fxkafka.Config { ... }).
var Module = fx.Module("fxkafka",
	fx.Provide(
		ConfigFromEnv,
		newModulePool,
		func(p *ProducerPool) Producer { return p },
	),
)

type moduleParams struct {
	fx.In

	Lifecycle fx.Lifecycle
	Config    Config
	Logger    *zap.Logger `optional:"true"`
}

func newModulePool(in moduleParams) (*ProducerPool, error) {
	p, err := New(in.Config, WithLogger(in.Logger))
	if err != nil {
		return nil, err
	}
	in.Lifecycle.Append(hooks(p))
	return p, nil
}
