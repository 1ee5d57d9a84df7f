package version

import "testing"

func TestGet(t *testing.T) {
	cases := []struct {
		name, commit, modified string
		wantShort              string
	}{
		{"linked commit", "0123456789abcdef0123456789abcdef01234567", "", "0123456789ab"},
		{"linked dirty commit", "0123456789abcdef0123456789abcdef01234567", "true", "0123456789ab+dirty"},
		{"short commit", "abc", "", "abc"},
	}
	defer func(c, m string) { commit, modified = c, m }(commit, modified)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			commit, modified = c.commit, c.modified
			in := Get()
			if in.Commit != c.commit || in.Short() != c.wantShort || in.Release != Release {
				t.Fatalf("Get() = %+v, short %q; want commit %q, short %q", in, in.Short(), c.commit, c.wantShort)
			}
			if want := Release + " (commit " + c.wantShort + ", " + in.Go + ")"; in.String() != want {
				t.Fatalf("String() = %q, want %q", in.String(), want)
			}
		})
	}
	// Neither linked nor stamped (a test binary has no VCS stamp).
	commit, modified = "", ""
	if in := Get(); in.Commit != "unknown" || in.Go == "unknown" {
		t.Fatalf("unstamped build: %+v", in)
	}
}
