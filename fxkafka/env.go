package fxkafka

import (
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// envField is one Config field as the environment sets it. The field's
// `env` tag is the one place its variable is named: ConfigFromEnv, the
// errors and the tests that check the doc comments and the README all read
// it from there.
type envField struct {
	name     string // the Config field
	index    int
	envVar   string
	verbatim bool // taken as it is; other strings are trimmed
}

// envFields lists Config's fields with their variables, in struct order.
var envFields = configEnvFields()

// envVars maps each Config field to its environment variable, for errors.
var envVars = func() map[string]string {
	m := make(map[string]string, len(envFields))
	for _, f := range envFields {
		m[f.name] = f.envVar
	}
	return m
}()

func configEnvFields() []envField {
	t := reflect.TypeFor[Config]()
	out := make([]envField, 0, t.NumField())
	for i := range t.NumField() {
		sf := t.Field(i)
		tag, ok := sf.Tag.Lookup("env")
		if !ok {
			continue // TestEveryConfigFieldNamesItsVariable refuses this
		}
		name, opts, _ := strings.Cut(tag, ",")
		out = append(out, envField{name: sf.Name, index: i, envVar: name, verbatim: opts == "verbatim"})
	}
	return out
}

// ConfigFromEnv reads a Config from the environment: KAFKA_BROKERS
// (comma-separated host:port list, required) and the variable each Config
// field names (KAFKA_CLIENT_ID, KAFKA_MAX_PRODUCERS, KAFKA_COMPRESSION,
// KAFKA_TLS, KAFKA_SASL_MECHANISM, ...; the README lists them all). Unset
// or empty variables leave their field at the zero value (the default).
// Values are trimmed, except the SASL credentials. It returns a
// [*ConfigError] naming the variable when one cannot be parsed or the result
// does not pass [Config.Validate].
func ConfigFromEnv() (Config, error) {
	c, err := readEnv()
	if err != nil {
		return Config{}, err
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// readEnv is ConfigFromEnv without Validate: what the environment says, for
// the Fx module, whose Config may be completed (by fx.Decorate) before New
// validates it.
func readEnv() (Config, error) {
	var c Config
	v := reflect.ValueOf(&c).Elem()
	for _, f := range envFields {
		s := os.Getenv(f.envVar)
		if !f.verbatim {
			s = strings.TrimSpace(s)
		}
		if s == "" {
			continue
		}
		if err := setFromEnv(v.Field(f.index), s); err != nil {
			return Config{}, &ConfigError{Field: f.name, EnvVar: f.envVar, Err: err}
		}
	}
	return c, nil
}

var durationType = reflect.TypeFor[time.Duration]()

// setFromEnv parses s into dst by dst's type. Errors quote s: no secret is
// parsed here (a Secret is a string and cannot fail).
func setFromEnv(dst reflect.Value, s string) error {
	switch {
	case dst.Type() == durationType:
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%q is not a duration such as \"5s\"", s)
		}
		dst.SetInt(int64(d))
	case dst.Kind() == reflect.String:
		dst.SetString(s)
	case dst.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("%q is not true or false", s)
		}
		dst.SetBool(b)
	case dst.Kind() == reflect.Int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("%q is not an integer", s)
		}
		dst.SetInt(int64(n))
	case dst.Type() == reflect.TypeFor[[]string]():
		dst.Set(reflect.ValueOf(splitList(s)))
	default:
		// Every Config field type is handled above; TestConfigFromEnvReadsEveryVariable
		// sets each one.
		return fmt.Errorf("fxkafka has no parser for %s", dst.Type())
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}
