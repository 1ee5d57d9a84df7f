package main

import (
	"fmt"
	"strings"

	"github.com/BurntSushi/toml"
)

// setFlags collects repeated `-set key=value` flags. Values are TOML
// values (3e-4, 18, true, "ln"); a bare word that is not TOML is taken as a
// string, so -set model.norm_type=ln works without quotes.
type setFlags struct {
	order  []string
	values map[string]any
}

func (s *setFlags) String() string { return strings.Join(s.order, ",") }

func (s *setFlags) Set(kv string) error {
	key, raw, ok := strings.Cut(kv, "=")
	key = strings.TrimSpace(key)
	if !ok || key == "" {
		return fmt.Errorf("-set %q: want key=value", kv)
	}
	v, err := parseTOMLValue(raw)
	if err != nil {
		return fmt.Errorf("-set %s: %v", key, err)
	}
	if s.values == nil {
		s.values = map[string]any{}
	}
	if _, dup := s.values[key]; !dup {
		s.order = append(s.order, key)
	}
	s.values[key] = v
	return nil
}

// parseTOMLValue parses one TOML value; "null" and "none" mean unset (nil).
func parseTOMLValue(raw string) (any, error) {
	raw = strings.TrimSpace(raw)
	switch strings.ToLower(raw) {
	case "null", "none", "nil":
		return nil, nil
	case "":
		return nil, fmt.Errorf("empty value")
	}
	var doc struct{ V any }
	if _, err := toml.Decode("V = "+raw, &doc); err == nil {
		return doc.V, nil
	}
	if strings.ContainsAny(raw, "\"'=[]{}\n") {
		return nil, fmt.Errorf("%q is not a TOML value", raw)
	}
	return raw, nil
}
