package hf

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"clm/hub"
)

// HubPrefix marks a model repository on the Hub: "hub:org/name" or
// "hub:org/name@revision".
const HubPrefix = "hub:"

// IsHub reports whether spec names a model on the Hub.
func IsHub(spec string) bool { return strings.HasPrefix(spec, HubPrefix) }

// hubFiles are the files of a model repository that clm reads (the
// weights' shards besides, when an index names them).
var hubFiles = map[string]bool{
	ConfigFile: true, WeightsFile: true, WeightsIndexFile: true, TokenizerFile: true,
	"tokenizer_config.json": true, "special_tokens_map.json": true, "generation_config.json": true,
}

// Download fetches what clm reads of the model repository that spec names
// ("hub:org/name[@revision]", default revision main) into the Hub cache of
// c (or serves it from there: offline mode and the rest as the client
// does) and returns the snapshot folder and spec pinned to its commit,
// "hub:org/name@<commit>". A repository that holds only PyTorch pickles is
// refused with the way out.
func Download(ctx context.Context, c *hub.Client, spec string) (dir, pinned string, err error) {
	id, rev, _ := strings.Cut(strings.TrimPrefix(spec, HubPrefix), "@")
	if rev == "" {
		rev = "main"
	}
	repo := hub.Model(id)
	snap, err := c.Snapshot(ctx, repo, rev, func(p string) bool { return hubFiles[p] })
	if err != nil {
		return "", "", err
	}
	pinned = HubPrefix + id + "@" + snap.Commit
	if !snap.Has(TokenizerFile) && snap.Has(vocabFile) && snap.Has(mergesFile) {
		if err := c.Fetch(ctx, snap, func(p string) bool { return p == vocabFile || p == mergesFile }); err != nil {
			return "", "", err
		}
	}
	if !snap.Has(ConfigFile) {
		return "", "", fmt.Errorf("%s: model %s@%s has no %s: not a transformers model", spec, id, rev, ConfigFile)
	}
	switch {
	case snap.Has(WeightsFile):
	case snap.Has(WeightsIndexFile):
		b, err := os.ReadFile(filepath.Join(snap.Dir, WeightsIndexFile))
		if err != nil {
			return "", "", err
		}
		shards, err := ShardNames(b)
		if err != nil {
			return "", "", fmt.Errorf("%s: %s: %w", spec, WeightsIndexFile, err)
		}
		want := map[string]bool{}
		for _, s := range shards {
			want[s] = true
		}
		if err := c.Fetch(ctx, snap, func(p string) bool { return want[p] }); err != nil {
			return "", "", err
		}
	case snap.Has(pytorchWeights):
		return "", "", fmt.Errorf("%s: model %s@%s has %s (a PyTorch pickle, which clm does not read) but no %s; "+
			"convert it and open the folder: python -c \"import sys; from transformers import AutoModelForCausalLM as M; M.from_pretrained(sys.argv[1], revision=sys.argv[2]).save_pretrained(sys.argv[3])\" %s %s DIR",
			spec, id, rev, pytorchWeights, WeightsFile, id, rev)
	default:
		return "", "", fmt.Errorf("%s: model %s@%s has no %s", spec, id, rev, WeightsFile)
	}
	return snap.Dir, pinned, nil
}
