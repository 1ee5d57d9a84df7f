package train

import (
	"reflect"
	"sort"
	"strings"

	"clm/internal/editdist"
	"clm/model"
)

// Keys lists every key an experiment file may set, as "section.key"
// ("name", "model.n_layer", "train.optim.momentum"), sorted.
func Keys() []string {
	keys := []string{"name", "model.preset"}
	keys = append(keys, tomlKeys("model.", reflect.TypeOf(model.Config{}))...)
	keys = append(keys, tomlKeys("train.", reflect.TypeOf(Options{}))...)
	keys = append(keys, tomlKeys("data.", reflect.TypeOf(DataOptions{}))...)
	keys = append(keys, tomlKeys("report.", reflect.TypeOf(ReportOptions{}))...)
	sort.Strings(keys)
	return keys
}

// tomlKeys lists the toml-tagged fields of a struct type, tables (struct
// fields) as prefix.key.sub.
func tomlKeys(prefix string, t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "" || name == "-" {
			continue
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct {
			out = append(out, tomlKeys(prefix+name+".", ft)...)
			continue
		}
		out = append(out, prefix+name)
	}
	return out
}

// didYouMean is ` (did you mean "train.lr"?)` for the known key nearest to
// key, within an edit distance that makes it a likely typo; else "".
func didYouMean(key string) string {
	keys := Keys()
	best, bestD := "", 1<<30
	for _, k := range keys {
		if d := editdist.Levenshtein(key, k); d < bestD {
			best, bestD = k, d
		}
		// A typo of the section alone ("trian") or of a table's name.
		if sec, _, _ := strings.Cut(k, "."); !strings.Contains(key, ".") && sec != k {
			if d := editdist.Levenshtein(key, sec); d < bestD {
				best, bestD = sec, d
			}
		}
	}
	if best == "" || bestD > max(2, len(key)/3) {
		// A key cut short: "train.warmup" for "train.warmup_ratio".
		best = ""
		for _, k := range keys {
			if strings.HasPrefix(k, key+"_") && (best == "" || len(k) < len(best)) {
				best = k
			}
		}
		if best == "" {
			return ""
		}
	}
	return ` (did you mean "` + best + `"?)`
}
