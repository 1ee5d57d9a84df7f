"""Shared helpers of the tokenizer reference scripts (Hugging Face tokenizers)."""
import array
import os
import struct

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors


def load_tokenizer(spec):
    """spec: a tokenizer.json path, or gpt2:DIR holding encoder.json and vocab.bpe."""
    if spec.startswith("gpt2:"):
        d = spec[len("gpt2:"):]
        bpe = models.BPE.from_file(os.path.join(d, "encoder.json"), os.path.join(d, "vocab.bpe"))
        tok = Tokenizer(bpe)
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        tok.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=True)])
        return tok
    return Tokenizer.from_file(spec)


def read_list(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def read_text(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8")


def write_ids(out, seqs):
    """Writes each sequence as uint32 length then uint32 ids, little endian."""
    with open(out, "wb") as f:
        for ids in seqs:
            f.write(struct.pack("<I", len(ids)))
            f.write(array.array("I", ids).tobytes())
