package train

import (
	"context"
	"io"

	"clm/data"
	"clm/model"
)

// PrepareData opens exp's prepared data (the run's token cache, building
// it if it is missing), as a run does, for evaluations outside training
// (clm quant). Close the dataset when done.
func PrepareData(ctx context.Context, exp *Experiment, log io.Writer) (*data.Dataset, error) {
	ds, err := prepare(ctx, exp, log)
	if err != nil {
		return nil, dataErr(ctx, exp, err)
	}
	return ds, nil
}

// OpenData opens the token cache of a run's experiment without building it:
// an error says why it is missing or stale.
func OpenData(ctx context.Context, exp *Experiment, log io.Writer) (*data.Dataset, error) {
	ds, err := data.Open(ctx, dataOptions(exp, log))
	if err != nil {
		return nil, dataErr(ctx, exp, err)
	}
	return ds, nil
}

// EvalPad is the padding token whose labels a run's loss ignores: the
// tokenizer's <|endoftext|>, if it has one.
func EvalPad(ds *data.Dataset) model.Pad {
	if id, ok := ds.Tokenizer.ID("<|endoftext|>"); ok {
		return model.PadToken(int64(id))
	}
	return model.Pad{}
}
