package testdata

// Opts is a configuration struct for configdoc's tests.
type Opts struct {
	// Rate is the learning rate | the step size.
	Rate  float64 `toml:"rate"`
	Steps int     `toml:"steps"` // optimizer steps (0: from epochs)
	// Sub, on a GPU, does it.
	Sub bool `toml:"sub"`
	// Hidden has no key.
	Hidden string `toml:"-"`
	// Nested is a table of its own.
	Nested struct{ A int } `toml:"nested"`
	// Names filter the files.
	Names []string `toml:"names"`
}
