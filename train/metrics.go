package train

import (
	"fmt"

	"clm/runlog"
)

// flushed makes the records written so far durable for a run that stops
// with err, and returns err joined on one line with the flush's error, if
// any; errors.Is and errors.As see both. (errjoin.OneLine would lose err's
// identity, which callers test: ErrInterrupted, *NaNError.)
func flushed(w *runlog.Writer, err error) error {
	if ferr := w.Flush(); ferr != nil {
		return fmt.Errorf("%w; %w", err, ferr)
	}
	return err
}
