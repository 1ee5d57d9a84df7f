"""Learning rates of Hugging Face's schedulers, step by step, for many cases.

usage: schedule_ref.py JOBS.json

JOBS.json is a list of objects {"schedule", "lr", "lr_end", "power",
"warmup_ratio", "total", "steps"}. For each job this builds what HF Trainer
builds (create_optimizer: a torch AdamW on the parameters; create_scheduler:
transformers.get_scheduler with num_warmup_steps =
TrainingArguments.get_warmup_steps(total)), through train.py's
warmup_steps/make_scheduler, then runs `steps` optimizer + scheduler steps
and records the learning rate each optimizer step used.

Output: one JSON line per job, {"warmup": W, "lrs": [lr_0, ..., lr_{steps-1}]}.
Where Hugging Face's lambda raises (polynomial with warmup == total divides by
total - warmup once the step reaches total), the entry and the rest are null
and "error" names the exception.
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train  # noqa: E402


def run(job: dict) -> dict:
    total = job["total"]
    warmup = train.warmup_steps(total, job["warmup_ratio"])
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=job["lr"])
    sched = train.make_scheduler(opt, job["schedule"], warmup, total, job["lr_end"], job["power"])
    lrs, err = [], None
    for _ in range(job["steps"]):
        if err is not None:
            lrs.append(None)
            continue
        lrs.append(opt.param_groups[0]["lr"])
        p.grad = torch.zeros_like(p)
        opt.step()
        try:
            sched.step()
        except ArithmeticError as e:
            err = type(e).__name__
    return {"warmup": warmup, "lrs": lrs, "error": err}


def main(path):
    with open(path) as f:
        jobs = json.load(f)
    for job in jobs:
        print(json.dumps(run(job)))


if __name__ == "__main__":
    main(sys.argv[1])
