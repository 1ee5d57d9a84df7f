// Package errjoin joins the problems a validation found into one error of
// one line, as every clm error is ("a; b; c").
package errjoin

import (
	"errors"
	"strings"
)

// OneLine joins errs with "; " (nil when there are none).
func OneLine(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return errors.New(strings.Join(msgs, "; "))
}
