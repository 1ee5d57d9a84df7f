package jsondiff

import (
	"reflect"
	"testing"
)

// TestFields: differing keys only, in key order, with absent keys marked,
// whatever the map iteration order.
func TestFields(t *testing.T) {
	type s struct {
		Z int      `json:"z"`
		A string   `json:"a"`
		M []int    `json:"m"`
		O *float64 `json:"o,omitempty"`
	}
	one := 1.0
	cases := []struct {
		name string
		a, b any
		want []Field
	}{
		{"equal", s{Z: 1, A: "x"}, s{Z: 1, A: "x"}, nil},
		{"sorted by key", s{Z: 1, A: "x", M: []int{1}}, s{Z: 2, A: "y", M: []int{2}},
			[]Field{{"a", "x", "y", true, true}, {"m", "[1]", "[2]", true, true}, {"z", "1", "2", true, true}}},
		{"absent on one side", s{O: &one}, s{}, []Field{{"o", "1", "<nil>", true, false}}},
		{"absent on the other", map[string]any{}, map[string]any{"k": "v"}, []Field{{"k", "<nil>", "v", false, true}}},
	}
	for _, c := range cases {
		for range 20 { // map order varies between iterations
			got, err := Fields(c.a, c.b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("%s: got %+v, want %+v", c.name, got, c.want)
			}
		}
	}
	if _, err := Fields(1, 2); err == nil {
		t.Error("non-objects accepted")
	}
}
