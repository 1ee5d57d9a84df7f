"""The original's data path, timed: bench_data.py REPO TOKENIZER_JSON.

With HF_ENDPOINT at a (test) Hub and empty caches: load_dataset(REPO,
split="train"), shuffle(seed=0).select(range(len)), then the original's
tokenize function mapped in batches (truncation to 128 tokens with the
overflowing tokens, keeping full chunks). Prints {"seconds", "chunks"}.
"""
import json
import sys
import time

import datasets
from transformers import PreTrainedTokenizerFast

CONTEXT = 128


def main():
    repo, tok_path = sys.argv[1], sys.argv[2]
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=tok_path)
    start = time.perf_counter()
    ds = datasets.load_dataset(repo, split="train")
    ds = ds.shuffle(seed=0).select(range(len(ds)))

    def tokenize(element):
        outputs = tokenizer(element["content"], truncation=True, max_length=CONTEXT,
                            return_overflowing_tokens=True, return_length=True)
        return {"input_ids": [ids for n, ids in zip(outputs["length"], outputs["input_ids"]) if n == CONTEXT]}

    tok = ds.map(tokenize, batched=True, remove_columns=ds.column_names)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "chunks": len(tok)}))


if __name__ == "__main__":
    main()
