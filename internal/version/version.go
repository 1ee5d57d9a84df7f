// Package version says which clm this is: its release and the commit it was
// built from, for `clm version`, the run folder and the image's labels.
//
// The commit comes from the linker (make build, the Dockerfile:
// -ldflags "-X clm/internal/version.commit=<sha>"), else from the VCS stamp
// that `go build` records in a git checkout, else it is "unknown".
package version

import "runtime/debug"

// Release is clm's version; a release bumps it.
const Release = "0.1.0"

// Set by the linker.
var (
	commit   string
	modified string // "true" when the tree had uncommitted changes
)

// Info is the build of this binary.
type Info struct {
	Release  string `json:"release"`
	Commit   string `json:"commit"`   // the full commit hash, or "unknown"
	Modified bool   `json:"modified"` // built from a tree with uncommitted changes
	Go       string `json:"go"`       // the Go toolchain
}

// Get returns the build of the running binary.
func Get() Info {
	in := Info{Release: Release, Commit: commit, Modified: modified == "true", Go: "unknown"}
	bi, ok := debug.ReadBuildInfo()
	if ok {
		in.Go = bi.GoVersion
		if in.Commit == "" {
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					in.Commit = s.Value
				case "vcs.modified":
					in.Modified = s.Value == "true"
				}
			}
		}
	}
	if in.Commit == "" {
		in.Commit = "unknown"
	}
	return in
}

// Short is the commit's first 12 characters, with "+dirty" after a build
// from a modified tree.
func (in Info) Short() string {
	c := in.Commit
	if len(c) > 12 {
		c = c[:12]
	}
	if in.Modified {
		c += "+dirty"
	}
	return c
}

// String is "0.1.0 (commit 1a2b3c4d5e6f, go1.26.8)".
func (in Info) String() string {
	return in.Release + " (commit " + in.Short() + ", " + in.Go + ")"
}
