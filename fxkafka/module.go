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
// it logs nothing. Every [Option] in the value group "fxkafka.options" is
// applied to the pool after the logger, in no particular order: that is
// how fxkafkaotel.Module and fxkafkaprom.Module register their hooks, and
// how an application adds its own:
//
//	fx.Provide(fx.Annotate(
//		func() fxkafka.Option { return fxkafka.WithHook(myHook) },
//		fx.ResultTags(`group:"fxkafka.options"`),
//	))
//
// Override the configuration with
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
	Options   []Option    `group:"fxkafka.options"`
}

func newModulePool(in moduleParams) (*ProducerPool, error) {
	p, err := New(in.Config, append([]Option{WithLogger(in.Logger)}, in.Options...)...)
	if err != nil {
		return nil, err
	}
	in.Lifecycle.Append(hooks(p))
	return p, nil
}
