"""Chunks documents as the original's tokenize function does, with
transformers: tokenizer(texts, truncation=True, max_length=CTX,
return_overflowing_tokens=True, return_length=True), keeping chunks whose
length is CTX. For the chunking parity test of data/.

usage: tokenizer_chunks.py TOKENIZER LISTFILE CTX OUT.bin
Writes, per document, its kept chunks concatenated (uint32 count, then ids).
"""
import sys

from transformers import PreTrainedTokenizerFast

from tokenizer_common import load_tokenizer, read_list, read_text, write_ids


def main():
    spec, listfile, ctx, out = sys.argv[1:5]
    ctx = int(ctx)
    tok = PreTrainedTokenizerFast(tokenizer_object=load_tokenizer(spec))
    texts = [read_text(p) for p in read_list(listfile)]
    enc = tok(texts, truncation=True, max_length=ctx, return_overflowing_tokens=True, return_length=True)
    per_doc = [[] for _ in texts]
    for length, ids, doc in zip(enc["length"], enc["input_ids"], enc["overflow_to_sample_mapping"]):
        if length == ctx:
            per_doc[doc].extend(ids)
    write_ids(out, per_doc)
    print(sum(len(d) for d in per_doc) // ctx)


if __name__ == "__main__":
    main()
