package fxkafka

import (
	"go.uber.org/fx"
	"go.uber.org/zap"
)

// Module provides a [Config] read from the environment, a [*ProducerPool]
// built from it, and the pool as a [Producer]. The pool is closed by the
// application's OnStop; OnStart does not dial, so the application starts
// while Kafka is down.
//
// The environment is read as [ConfigFromEnv] does, but not validated there:
// what it lacks is an error only if nothing supplies it before the pool is
// made, and [New] validates what it is made from. So a service can set the
// configuration in code or from a file, with no KAFKA_* variable set:
// replace it with fx.Replace(fxkafka.Config{...}) (the environment is then
// not read at all), or complete the environment's with
// fx.Decorate(func(c fxkafka.Config) fxkafka.Config { ... }). A variable
// that is set but cannot be parsed fails the application at once.
//
// If the application provides a *zap.Logger, the pool logs to it; otherwise
// it logs nothing. Options for the pool ([WithSaramaConfig], [WithHook], ...)
// are given with [ModuleOptions].
var Module = fx.Module("fxkafka",
	fx.Provide(
		environmentConfig,
		newModulePool,
		func(p *ProducerPool) Producer { return p },
	),
)

// optionsGroup is the Fx value group ModuleOptions adds to.
const optionsGroup = "fxkafka.options"

// ModuleOptions gives opts to the pool [Module] makes, after its logger
// option: fx.New(fxkafka.Module, fxkafka.ModuleOptions(fxkafka.WithSaramaConfig(f))).
// It may be used more than once, by the application and by plugins; Fx
// gives the options of different ModuleOptions calls in no set order, so
// keep options whose order matters (two WithSaramaConfig funcs changing one
// setting) in one call.
func ModuleOptions(opts ...Option) fx.Option {
	return fx.Provide(fx.Annotate(
		func() []Option { return opts },
		fx.ResultTags(`group:"`+optionsGroup+`"`), // one []Option per call: Fx shuffles a group's values
	))
}

// environmentConfig is the module's Config: the environment's, unvalidated.
func environmentConfig() (Config, error) { return readEnv() }

type moduleParams struct {
	fx.In

	Lifecycle fx.Lifecycle
	Config    Config
	Logger    *zap.Logger `optional:"true"`
	Options   [][]Option  `group:"fxkafka.options"`
}

func newModulePool(in moduleParams) (*ProducerPool, error) {
	opts := []Option{WithLogger(in.Logger)}
	for _, o := range in.Options {
		opts = append(opts, o...)
	}
	p, err := New(in.Config, opts...)
	if err != nil {
		return nil, err
	}
	in.Lifecycle.Append(hooks(p))
	return p, nil
}
