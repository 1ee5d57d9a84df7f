package jsonnum

import (
	"encoding/json"
	"math"
	"testing"
)

func TestFloatRoundTrip(t *testing.T) {
	cases := []struct {
		in   float64
		json string
	}{
		{1.5, "1.5"},
		{0, "0"},
		{-2e-300, "-2e-300"},
		{math.NaN(), "null"},
		{math.Inf(1), "null"},
		{math.Inf(-1), "null"},
	}
	for _, c := range cases {
		b, err := json.Marshal(Float(c.in))
		if err != nil || string(b) != c.json {
			t.Errorf("Marshal(%v) = %s, %v; want %s", c.in, b, err, c.json)
			continue
		}
		var back Float
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("Unmarshal(%s): %v", b, err)
		}
		want := c.in
		if math.IsInf(want, 0) {
			want = math.NaN() // null reads as NaN
		}
		if got := float64(back); got != want && !(math.IsNaN(got) && math.IsNaN(want)) {
			t.Errorf("round trip of %v: %v", c.in, got)
		}
	}
	var f Float
	if err := json.Unmarshal([]byte(`"x"`), &f); err == nil {
		t.Error("a string read as a number")
	}
	if got := Floats([]Float{1, Float(math.NaN())}); got[0] != 1 || !math.IsNaN(got[1]) {
		t.Errorf("Floats: %v", got)
	}
}
