"""Opens `clm export` folders with transformers and reports what the Go test
compares with clm (cmd/clm/export_test.go): one Python process for every case.

Usage: python hf_export_check.py jobs.json   (prints one JSON object)

jobs.json: {"cases": [{"name", "dir", "remote" (trust_remote_code),
  "clm" (a safetensors file of clm's forward: "input_ids" [B, T] int64,
  "logits" [B, T, V], "loss" []), "prompt_ids", "max_new_tokens",
  "text" (code to tokenize)}]}

Per case it reports: the class transformers built, the keys it found missing
or unexpected, the largest |logits - clm| relative to max |clm|, |loss - clm|,
the greedy generate() tokens after the prompt, AutoTokenizer's ids of "text",
and for a folder opened without remote code whether a trust_remote_code=False
load succeeded.
"""

import json
import sys

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer


def check(case):
    torch.manual_seed(0)
    model, info = AutoModelForCausalLM.from_pretrained(
        case["dir"], trust_remote_code=case["remote"], dtype=torch.float32, output_loading_info=True
    )
    model.eval()
    ref = load_file(case["clm"])
    ids = ref["input_ids"].long()
    with torch.no_grad():
        out = model(ids, labels=ids)
    want = ref["logits"].float()
    rel = ((out.logits - want).abs().max() / want.abs().max()).item()
    prompt = torch.tensor([case["prompt_ids"]], dtype=torch.long)
    with torch.no_grad():
        gen = model.generate(prompt, do_sample=False, max_new_tokens=case["max_new_tokens"])
    new = gen[0, prompt.shape[1]:].tolist()
    eos = model.generation_config.eos_token_id
    if eos in new:  # clm sample stops before the eos token; generate() emits it
        new = new[: new.index(eos)]
    tok = AutoTokenizer.from_pretrained(case["dir"], trust_remote_code=case["remote"])
    return {
        "name": case["name"],
        "class": type(model).__name__,
        "missing": sorted(info["missing_keys"]),
        "unexpected": sorted(info["unexpected_keys"]),
        "dtype": str(model.dtype),
        "logits_rel": rel,
        "loss_diff": abs(out.loss.item() - ref["loss"].item()),
        "generated": new,
        "generated_text": tok.decode(case["prompt_ids"] + new),
        "text_ids": tok(case["text"])["input_ids"],
        "eos_token": tok.eos_token,
        "pad_token": tok.pad_token,
    }


def main():
    torch.set_num_threads(1)  # tiny models: one thread is fastest, and the machine is shared
    with open(sys.argv[1]) as fh:
        jobs = json.load(fh)
    print(json.dumps({"cases": [check(c) for c in jobs["cases"]]}))


if __name__ == "__main__":
    main()
