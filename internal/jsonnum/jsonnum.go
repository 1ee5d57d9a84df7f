// Package jsonnum is the float of the run files (metrics.jsonl): JSON has no
// NaN or infinity, so a non-finite value is written as null and null reads
// back as NaN. train writes it and plot reads it; plot must not import train
// (which links libtorch), so the type lives here.
package jsonnum

import (
	"encoding/json"
	"math"
)

// Float is a float64 that marshals NaN and ±Inf as null and unmarshals null
// as NaN.
type Float float64

// MarshalJSON implements json.Marshaler.
func (f Float) MarshalJSON() ([]byte, error) {
	v := float64(f)
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return []byte("null"), nil
	}
	return json.Marshal(v)
}

// UnmarshalJSON implements json.Unmarshaler.
func (f *Float) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*f = Float(math.NaN())
		return nil
	}
	var v float64
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*f = Float(v)
	return nil
}

// Floats converts a slice read from JSON to float64s.
func Floats(v []Float) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}
