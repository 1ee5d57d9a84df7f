"""Pre-tokenizes a UTF-8 text file with Hugging Face's ByteLevel pre-tokenizer
(GPT-2's pattern, add_prefix_space=False) and prints the pieces, byte-level
mapped, as a JSON array. For the pre-tokenizer Unicode test of data/bpe.

usage: tokenizer_pretok.py TEXTFILE
"""
import json
import sys

from tokenizers import pre_tokenizers


def main():
    with open(sys.argv[1], "rb") as f:
        text = f.read().decode("utf-8")
    pt = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    json.dump([p for p, _ in pt.pre_tokenize_str(text)], sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
