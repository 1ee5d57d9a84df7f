package hub

import (
	"errors"
	"fmt"
	"strings"
)

// Kind classifies a failure.
type Kind int

// Kinds of Error.
const (
	KindOther            Kind = iota
	KindRepoNotFound          // 404 RepoNotFound, or 401 on a repository URL: missing, private or gated
	KindRevisionNotFound      // the repository has no such branch, tag or commit
	KindEntryNotFound         // the revision has no such file
	KindGated                 // the repository is gated and the token may not read it
	KindUnauthorized          // 401: the token is invalid
	KindForbidden             // 403: the token lacks a permission
	KindUnavailable           // the Hub could not be reached, or kept failing (429, 5xx)
	KindOffline               // offline mode, and the cache lacks what was asked
	KindCorrupt               // a downloaded file failed its size or checksum
)

// Error is a failed Hub operation. Its message is one line that names the
// repository, revision and file concerned and says what to do.
type Error struct {
	Kind     Kind
	Repo     Repo
	Revision string
	File     string
	Status   int    // HTTP status, 0 if none
	Detail   string // the server's X-Error-Message or the transport error
	Hint     string // what to do
	Err      error  // the underlying error, if any
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("hub: ")
	target := e.Repo.String()
	if e.Revision != "" {
		target += "@" + e.Revision
	}
	switch e.Kind {
	case KindRepoNotFound:
		fmt.Fprintf(&b, "%s not found, or private or gated", e.Repo)
	case KindRevisionNotFound:
		fmt.Fprintf(&b, "%s has no revision %q", e.Repo, e.Revision)
	case KindEntryNotFound:
		fmt.Fprintf(&b, "%s has no file %q", target, e.File)
	case KindGated:
		fmt.Fprintf(&b, "%s is gated", e.Repo)
	case KindUnauthorized:
		fmt.Fprintf(&b, "%s: the token was refused", target)
	case KindForbidden:
		fmt.Fprintf(&b, "%s: access forbidden", target)
	case KindCorrupt:
		fmt.Fprintf(&b, "%s: file %q", target, e.File)
	default:
		b.WriteString(target)
		if e.File != "" {
			fmt.Fprintf(&b, " file %q", e.File)
		}
	}
	if e.Status != 0 {
		fmt.Fprintf(&b, " (HTTP %d", e.Status)
		if e.Detail != "" {
			fmt.Fprintf(&b, ": %s", e.Detail)
		}
		b.WriteString(")")
	} else if e.Detail != "" {
		fmt.Fprintf(&b, ": %s", e.Detail)
	}
	if e.Hint != "" {
		b.WriteString("; ")
		b.WriteString(e.Hint)
	}
	return oneLine(b.String())
}

func (e *Error) Unwrap() error { return e.Err }

// IsKind reports whether err is an *Error of kind k.
func IsKind(err error, k Kind) bool {
	var he *Error
	return errors.As(err, &he) && he.Kind == k
}

// oneLine folds a message onto one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

const loginHint = "if it is private or gated, accept its terms on the Hub and log in: set HF_TOKEN or run `hf auth login`"
