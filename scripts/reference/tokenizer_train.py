"""Trains a byte-level BPE with Hugging Face, as the original did:
transformers' train_new_from_iterator on GPT-2's tokenizer, for the training
parity test and benchmark of data/bpe.

usage: tokenizer_train.py GPT2DIR LISTFILE OUT.json VOCAB_SIZE [MIN_FREQUENCY]
Prints one JSON line with the timing and number of merges.
"""
import json
import sys
import time

from transformers import PreTrainedTokenizerFast

from tokenizer_common import load_tokenizer, read_list, read_text


def main():
    gpt2dir, listfile, out, vocab_size = sys.argv[1:5]
    kwargs = {}
    if len(sys.argv) > 5:
        kwargs["min_frequency"] = int(sys.argv[5])
    base = PreTrainedTokenizerFast(tokenizer_object=load_tokenizer("gpt2:" + gpt2dir),
                                   bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   unk_token="<|endoftext|>")
    texts = [read_text(p) for p in read_list(listfile)]
    t0 = time.perf_counter()
    new = base.train_new_from_iterator(iter(texts), int(vocab_size), **kwargs)
    dt = time.perf_counter() - t0
    new._tokenizer.save(out)
    model = json.loads(new._tokenizer.to_str())["model"]
    print(json.dumps({"seconds": dt, "merges": len(model["merges"]), "vocab": len(model["vocab"]),
                      "bytes": sum(len(t.encode("utf-8")) for t in texts)}))


if __name__ == "__main__":
    main()
