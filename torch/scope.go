package torch

import "sync"

// Scope owns the tensors created while it is the innermost open scope and
// frees them when it closes. Use one per training step.
type Scope struct {
	parent  *Scope
	tensors []*Tensor
	closed  bool
}

var (
	scopeMu  sync.Mutex
	topScope *Scope
)

// NewScope opens a scope nested in the current one.
func NewScope() *Scope {
	scopeMu.Lock()
	defer scopeMu.Unlock()
	s := &Scope{parent: topScope}
	topScope = s
	return s
}

// adopt gives t to the innermost open scope, if any.
func adopt(t *Tensor) {
	scopeMu.Lock()
	if s := topScope; s != nil {
		s.tensors = append(s.tensors, t)
	}
	scopeMu.Unlock()
}

// Keep moves ts out of s into the enclosing scope, or, when s is the
// outermost scope, to the caller, who then frees them. It returns its first
// argument for convenience.
func (s *Scope) Keep(ts ...*Tensor) *Tensor {
	scopeMu.Lock()
	defer scopeMu.Unlock()
	for _, t := range ts {
		for i := len(s.tensors) - 1; i >= 0; i-- {
			if s.tensors[i] == t {
				s.tensors = append(s.tensors[:i], s.tensors[i+1:]...)
				if s.parent != nil {
					s.parent.tensors = append(s.parent.tensors, t)
				}
				break
			}
		}
	}
	if len(ts) == 0 {
		return nil
	}
	return ts[0]
}

// Len returns the number of tensors s currently owns.
func (s *Scope) Len() int {
	scopeMu.Lock()
	defer scopeMu.Unlock()
	return len(s.tensors)
}

// Close frees every tensor s owns and makes its parent current again. Scopes
// must close innermost first; closing twice is a no-op.
func (s *Scope) Close() {
	scopeMu.Lock()
	if s.closed {
		scopeMu.Unlock()
		return
	}
	if topScope != s {
		scopeMu.Unlock()
		panic(&Error{Op: "scope", Msg: "scopes closed out of order (close the innermost first)"})
	}
	s.closed = true
	topScope = s.parent
	ts := s.tensors
	s.tensors = nil
	scopeMu.Unlock()
	for _, t := range ts {
		t.Free()
	}
}

// currentScope returns the innermost open scope (nil: none).
func currentScope() *Scope {
	scopeMu.Lock()
	defer scopeMu.Unlock()
	return topScope
}

// unwindScopes closes, innermost first, the scopes opened above entry that
// are still open (a panic skipped their Close).
func unwindScopes(entry *Scope) {
	for {
		s := currentScope()
		if s == nil || s == entry || !above(s, entry) {
			return
		}
		s.Close()
	}
}

// above reports whether entry is an ancestor of s (nil is every scope's).
func above(s, entry *Scope) bool {
	for p := s.parent; ; p = p.parent {
		if p == entry {
			return true
		}
		if p == nil {
			return false
		}
	}
}

// WithScope runs f inside a new scope and closes it afterwards, even if f
// panics.
func WithScope(f func(s *Scope)) {
	s := NewScope()
	defer s.Close()
	f(s)
}
