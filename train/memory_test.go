package train

import (
	"fmt"
	"strings"
	"testing"
)

// TestCheckpointActivationsTrain: a run with checkpoint_activations =
// "block" logs the losses and ends with the weights of a run without, bit
// for bit (accumulation 2, clipping, dropout); every train record carries
// the window's peak memory.
func TestCheckpointActivationsTrain(t *testing.T) {
	batches := makeBatches(24, 4, 32, 512, 4)
	for _, preset := range []string{"default", "skipless-parallel"} {
		t.Run(preset, func(t *testing.T) {
			run := func(ck string) (map[string][]byte, []map[string]any) {
				extra := fmt.Sprintf("checkpoint_activations = %q\n[report]", ck)
				e := experiment(t, preset, strings.Replace(resumeTrain, "[report]", extra, 1))
				e.Model.ResidPdrop = 0.1
				return trainToEnd(t, e, batches)
			}
			wNone, logNone := run("none")
			wBlock, logBlock := run("block")
			compareWeights(t, "checkpoint_activations block", wBlock, wNone)
			for i := range logNone {
				if logNone[i]["loss"] != logBlock[i]["loss"] {
					t.Errorf("log line %d: loss %v without checkpointing, %v with", i, logNone[i]["loss"], logBlock[i]["loss"])
				}
				if p, ok := logBlock[i]["peak_memory"].(float64); !ok || p < 1<<20 {
					t.Errorf("log line %d: peak_memory %v", i, logBlock[i]["peak_memory"])
				}
			}
		})
	}
}
