"""Reference for clm's Hugging Face import (package hf): a transformers-made
GPT2LMHeadModel, and transformers' own loss and greedy generation on it.

usage:
  hf_gpt2_make.py make --tokenizer TOK.json --out DIR [--seed S] [--set key=JSON ...]
      a random GPT2LMHeadModel (vocabulary = the tokenizer's, 2 layers, width
      64, 4 heads, 64 positions, GPT2Config's dropouts) with every weight
      and bias perturbed away from its init, saved with save_pretrained
      (safetensors) beside the tokenizer (tokenizer.json, tokenizer_config.json)
  hf_gpt2_make.py loss --model DIR --job IDS.json:B [--job ...]
      for each job, the mean loss per sequence over the rows of IDS.json (a
      list of token id lists), in batches of B rows, each batch's mean
      weighted by its rows; labels equal to <|endoftext|> are ignored (-100),
      as clm's collator does. Prints a JSON list of {"loss", "sequences"}.
  hf_gpt2_make.py generate --model DIR --prompt TEXT --n N
      greedy generate(); prints {"prompt_ids", "ids" (new tokens, without a
      final <|endoftext|>), "hex" (the bytes clm sample prints: the prompt,
      then each new token's bytes, which need not be UTF-8 one by one)}.
"""
import argparse
import json

import torch
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

EOS = "<|endoftext|>"


def tokenizer_from(path):
    return PreTrainedTokenizerFast(tokenizer_file=path, bos_token=EOS, eos_token=EOS, unk_token=EOS)


def cmd_make(a):
    tok = tokenizer_from(a.tokenizer)
    eos = tok.convert_tokens_to_ids(EOS)
    kw = dict(vocab_size=len(tok), n_positions=64, n_embd=64, n_layer=2, n_head=4, bos_token_id=eos, eos_token_id=eos)
    for s in a.set or []:
        k, v = s.split("=", 1)
        kw[k] = json.loads(v)
    torch.manual_seed(a.seed)
    model = GPT2LMHeadModel(GPT2Config(**kw))
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 0.1 if name.endswith(".bias") else 0.05
            p.add_(scale * torch.randn_like(p))
    model.save_pretrained(a.out)
    tok.save_pretrained(a.out)
    print(json.dumps({"vocab_size": len(tok), "eos": eos}))


def load(path):
    model = GPT2LMHeadModel.from_pretrained(path, attn_implementation="eager").float().eval()
    return model, PreTrainedTokenizerFast.from_pretrained(path)


def mean_loss(model, eos, rows, batch):
    total = 0.0
    with torch.no_grad():
        for i in range(0, len(rows), batch):
            ids = torch.tensor(rows[i:i + batch], dtype=torch.long)
            labels = ids.clone()
            labels[labels == eos] = -100
            total += model(ids, labels=labels).loss.double().item() * ids.shape[0]
    return {"loss": total / len(rows), "sequences": len(rows)}


def cmd_loss(a):
    model, tok = load(a.model)
    eos = tok.convert_tokens_to_ids(EOS)
    out = []
    for job in a.job:
        path, batch = job.rsplit(":", 1)
        with open(path) as f:
            out.append(mean_loss(model, eos, json.load(f), int(batch)))
    print(json.dumps(out))


def cmd_generate(a):
    model, tok = load(a.model)
    eos = tok.convert_tokens_to_ids(EOS)
    prompt = tok(a.prompt, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), max_new_tokens=a.n, do_sample=False,
                             eos_token_id=eos, pad_token_id=eos)
    new = out[0, len(prompt):].tolist()
    if eos in new:
        new = new[:new.index(eos)]
    byte_of = {c: b for b, c in byte_chars().items()}
    raw = a.prompt.encode() + b"".join(bytes(byte_of[c] for c in tok.convert_ids_to_tokens(i)) for i in new)
    print(json.dumps({"prompt_ids": prompt, "ids": new, "hex": raw.hex()}))


def byte_chars():
    """GPT-2's byte-level alphabet: byte -> the character that stands for it
    in the vocabulary (printable bytes as themselves, the rest from U+0100)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    out, n = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + n)
            n += 1
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("--tokenizer", required=True)
    m.add_argument("--out", required=True)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--set", action="append", help="a GPT2Config key=JSON value")
    m.set_defaults(fn=cmd_make)
    lo = sub.add_parser("loss")
    lo.add_argument("--model", required=True)
    lo.add_argument("--job", action="append", required=True, help="IDS.json:BATCH")
    lo.set_defaults(fn=cmd_loss)
    g = sub.add_parser("generate")
    g.add_argument("--model", required=True)
    g.add_argument("--prompt", required=True)
    g.add_argument("--n", type=int, required=True)
    g.set_defaults(fn=cmd_generate)
    a = ap.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
