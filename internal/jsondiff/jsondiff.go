// Package jsondiff lists the top-level fields in which the JSON encodings
// of two values differ, in key order, so that reports of differences are
// the same from run to run.
package jsondiff

import (
	"encoding/json"
	"fmt"
	"sort"
)

// Field is one top-level key whose values differ. A and B are the values as
// fmt prints them ("<nil>" where absent).
type Field struct {
	Key      string
	A, B     string
	InA, InB bool
}

// Fields returns the differing top-level fields of the JSON objects that a
// and b encode to, sorted by key.
func Fields(a, b any) ([]Field, error) {
	ma, err := object(a)
	if err != nil {
		return nil, err
	}
	mb, err := object(b)
	if err != nil {
		return nil, err
	}
	keys := map[string]bool{}
	for k := range ma {
		keys[k] = true
	}
	for k := range mb {
		keys[k] = true
	}
	var out []Field
	for k := range keys {
		va, inA := ma[k]
		vb, inB := mb[k]
		f := Field{Key: k, A: fmt.Sprint(va), B: fmt.Sprint(vb), InA: inA, InB: inB}
		if f.A != f.B || inA != inB {
			out = append(out, f)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// object decodes v's JSON encoding as an object.
func object(v any) (map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return m, nil
}
