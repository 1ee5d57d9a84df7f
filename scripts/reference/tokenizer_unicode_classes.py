"""Prints, for every Unicode code point, the class that Hugging Face's GPT-2
pre-tokenizer pattern gives it: L (\\p{L}), N (\\p{N}), S (\\s) or O (other),
one character per code point (surrogates as O). Used to generate and test the
Unicode tables of data/bpe, whose Go unicode package may be an older Unicode
version than Hugging Face's Oniguruma.
"""
import sys

from tokenizers import pre_tokenizers


def main():
    pt = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    n = lambda s: len(pt.pre_tokenize_str(s))
    out = []
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            out.append("O")
            continue
        c = chr(cp)
        if n("a" + c) == 1:
            out.append("L")
        elif n("1" + c) == 1:
            out.append("N")
        elif n("!" + c) == 1:
            out.append("O")
        else:
            out.append("S")
    sys.stdout.write("".join(out))


if __name__ == "__main__":
    main()
