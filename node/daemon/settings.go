package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hiersip/hiersip/node"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/env"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"
)

// setting is one setting of Config.
type setting struct {
	key   string // "sip.udp"
	help  string
	index []int
	typ   reflect.Type
}

var durationType = reflect.TypeFor[time.Duration]()

// settings lists the settings of Config and its section keys.
func settings() (fields []setting, sections map[string]bool) {
	sections = map[string]bool{}
	var walk func(t reflect.Type, prefix string, index []int)
	walk = func(t reflect.Type, prefix string, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("koanf")
			if tag == "" || tag == "-" {
				continue
			}
			key := prefix + tag
			idx := append(slices.Clone(index), i)
			if f.Type.Kind() == reflect.Struct && f.Type != durationType {
				sections[key] = true
				walk(f.Type, key+".", idx)
				continue
			}
			fields = append(fields, setting{key: key, help: f.Tag.Get("help"), index: idx, typ: f.Type})
		}
	}
	walk(reflect.TypeFor[Config](), "", nil)
	return fields, sections
}

// flagName is the command-line flag of a setting: "sip.users_file" is
// --sip-users-file.
func flagName(key string) string { return strings.NewReplacer(".", "-", "_", "-").Replace(key) }

// envName is the environment variable of a setting: HIERSIP_SIP_USERS_FILE.
func envName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// AddFlags adds a flag for every setting of Config to fs, named
// after its key ("sip.udp" is --sip-udp), with the default shown.
func AddFlags(fs *pflag.FlagSet) {
	def := reflect.ValueOf(Defaults())
	fields, _ := settings()
	for _, f := range fields {
		name, v := flagName(f.key), def.FieldByIndex(f.index)
		help := f.help + " (" + f.key + ")"
		switch {
		case f.typ == durationType:
			fs.Duration(name, time.Duration(v.Int()), help)
		case f.typ.Kind() == reflect.String:
			fs.String(name, v.String(), help)
		case f.typ.Kind() == reflect.Bool:
			fs.Bool(name, v.Bool(), help)
		case f.typ.Kind() == reflect.Int:
			fs.Int(name, int(v.Int()), help)
		case f.typ.Kind() == reflect.Float64:
			fs.Float64(name, v.Float(), help)
		case f.typ.Kind() == reflect.Slice:
			fs.StringSlice(name, v.Interface().([]string), help)
		default:
			panic("daemon: setting of unsupported type " + f.typ.String())
		}
	}
}

// Load reads the daemon's configuration: defaults (Defaults), then the YAML
// file at path (if path is not empty), then HIERSIP_… environment variables,
// then the flags of flags that were set on the command line (see AddFlags;
// flags may be nil). An invalid or unknown setting is a *node.ConfigError
// naming its key. The result is not validated further: NodeConfig does that.
func Load(path string, flags *pflag.FlagSet) (Config, error) {
	c := Defaults()
	fields, sections := settings()
	byKey := map[string]setting{}
	byEnv := map[string]string{}
	byFlag := map[string]string{}
	for _, f := range fields {
		byKey[f.key] = f
		byEnv[envName(f.key)] = f.key
		byFlag[flagName(f.key)] = f.key
	}
	k := koanf.New(".")
	if path != "" {
		if err := k.Load(file.Provider(path), yaml.Parser()); err != nil {
			return c, fmt.Errorf("config: %s: %w", path, err)
		}
		if err := checkKeys(k, byKey, sections); err != nil {
			return c, err
		}
	}
	var unknownEnv []string
	err := k.Load(env.ProviderWithValue(EnvPrefix, ".", func(name, value string) (string, any) {
		key, ok := byEnv[name]
		if !ok {
			if name != EnvPrefix+"CONFIG" {
				unknownEnv = append(unknownEnv, name)
			}
			return "", nil
		}
		return key, value
	}), nil)
	if err != nil {
		return c, fmt.Errorf("config: environment: %w", err)
	}
	if len(unknownEnv) > 0 {
		slices.Sort(unknownEnv)
		return c, &node.ConfigError{Field: unknownEnv[0], Err: errors.New("unknown setting in the environment")}
	}
	if flags != nil {
		err := k.Load(posflag.ProviderWithFlag(flags, ".", nil, func(f *pflag.Flag) (string, any) {
			key, ok := byFlag[f.Name]
			if !ok {
				return "", nil
			}
			if f.Value.Type() == "stringSlice" {
				v, _ := flags.GetStringSlice(f.Name)
				return key, v
			}
			return key, f.Value.String()
		}), nil)
		if err != nil {
			return c, fmt.Errorf("config: flags: %w", err)
		}
	}
	v := reflect.ValueOf(&c).Elem()
	for _, f := range fields {
		if !k.Exists(f.key) {
			continue
		}
		if err := setField(v.FieldByIndex(f.index), k.Get(f.key)); err != nil {
			return c, &node.ConfigError{Field: f.key, Err: err}
		}
	}
	return c, nil
}

// WriteSettings writes every setting of c as YAML, in the layout of
// hiersip.example.yaml: a file hiersip node can read back.
func (c Config) WriteSettings(w io.Writer) error {
	fields, _ := settings()
	v := reflect.ValueOf(c)
	var open []string // the sections of the previous line
	var b strings.Builder
	for _, f := range fields {
		parts := strings.Split(f.key, ".")
		sections := parts[:len(parts)-1]
		common := 0
		for common < len(open) && common < len(sections) && open[common] == sections[common] {
			common++
		}
		for i := common; i < len(sections); i++ {
			fmt.Fprintf(&b, "%s%s:\n", strings.Repeat("  ", i), sections[i])
		}
		open = sections
		fv := v.FieldByIndex(f.index)
		var val any = fv.Interface()
		if f.typ == durationType {
			val = time.Duration(fv.Int()).String()
		}
		if f.typ.Kind() == reflect.Slice && fv.Len() == 0 {
			val = []string{}
		}
		js, err := json.Marshal(val) // JSON scalars and lists are YAML
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s%s: %s\n", strings.Repeat("  ", len(sections)), parts[len(parts)-1], js)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// checkKeys rejects keys of the file that are not settings.
func checkKeys(k *koanf.Koanf, byKey map[string]setting, sections map[string]bool) error {
	keys := k.Keys()
	slices.Sort(keys)
	for _, key := range keys {
		if _, ok := byKey[key]; ok {
			continue
		}
		if sections[key] {
			switch v := k.Get(key).(type) {
			case nil:
				continue
			case map[string]any:
				if len(v) == 0 {
					continue
				}
			}
			return &node.ConfigError{Field: key, Err: errors.New("want a mapping of settings")}
		}
		if to, ok := movedKeys[key]; ok {
			return &node.ConfigError{Field: key, Err: fmt.Errorf("moved to %s", to)}
		}
		return &node.ConfigError{Field: key, Err: errors.New("unknown setting")}
	}
	return nil
}

// movedKeys are settings of earlier versions and their new keys.
var movedKeys = map[string]string{
	// One reachability for the host and the election.
	"election.reachability": "nat.reachability",
}

// setField sets a setting from a value of the file (YAML types), the
// environment (strings) or a flag (strings, string slices).
func setField(v reflect.Value, raw any) error {
	if raw == nil {
		v.SetZero()
		return nil
	}
	str, isStr := raw.(string)
	switch {
	case v.Type() == durationType:
		switch x := raw.(type) {
		case string:
			if secs, err := strconv.ParseFloat(x, 64); err == nil {
				v.SetInt(int64(secs * float64(time.Second)))
				return nil
			}
			d, err := time.ParseDuration(x)
			if err != nil {
				return fmt.Errorf("%q: invalid duration (want e.g. 30s, 5m)", x)
			}
			v.SetInt(int64(d))
		case int, int64, float64:
			n, _ := strconv.ParseFloat(fmt.Sprint(x), 64)
			v.SetInt(int64(n * float64(time.Second))) // plain numbers are seconds
		default:
			return fmt.Errorf("%v: want a duration", raw)
		}
	case v.Kind() == reflect.String:
		switch raw.(type) {
		case string, int, int64, float64, bool:
			v.SetString(fmt.Sprint(raw))
		default:
			return fmt.Errorf("%v: want a string", raw)
		}
	case v.Kind() == reflect.Bool:
		if b, ok := raw.(bool); ok {
			v.SetBool(b)
			return nil
		}
		b, err := strconv.ParseBool(str)
		if !isStr || err != nil {
			return fmt.Errorf("%q: want true or false", fmt.Sprint(raw))
		}
		v.SetBool(b)
	case v.Kind() == reflect.Int:
		s := fmt.Sprint(raw)
		n, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("%q: want an integer", s)
		}
		v.SetInt(int64(n))
	case v.Kind() == reflect.Float64:
		s := fmt.Sprint(raw)
		x, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("%q: want a number", s)
		}
		v.SetFloat(x)
	case v.Kind() == reflect.Slice:
		var out []string
		switch x := raw.(type) {
		case string:
			for _, p := range strings.Split(x, ",") {
				if p = strings.TrimSpace(p); p != "" {
					out = append(out, p)
				}
			}
		case []string:
			out = x
		case []any:
			for i, e := range x {
				switch e.(type) {
				case string, int, int64, float64:
					out = append(out, fmt.Sprint(e))
				default:
					return fmt.Errorf("[%d]: %v: want a string", i, e)
				}
			}
		default:
			return fmt.Errorf("%v: want a list", raw)
		}
		if len(out) == 0 {
			out = nil
		}
		v.Set(reflect.ValueOf(out))
	default:
		return fmt.Errorf("unsupported setting type %s", v.Type())
	}
	return nil
}

// changedSettings lists the keys whose values differ between a and b,
// except those in skip.
func changedSettings(a, b Config, skip ...string) []string {
	fields, _ := settings()
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	var out []string
	for _, f := range fields {
		if slices.Contains(skip, f.key) {
			continue
		}
		if !reflect.DeepEqual(va.FieldByIndex(f.index).Interface(), vb.FieldByIndex(f.index).Interface()) {
			out = append(out, f.key)
		}
	}
	return out
}
