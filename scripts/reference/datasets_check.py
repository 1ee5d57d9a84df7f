"""Reference for clm's Hub datasets: the `datasets` library itself.

Usage: datasets_check.py JOBS.json
With HF_ENDPOINT pointing at a (test) Hub, for each job {"id", "split",
"seed", "k"}: load_dataset(id, split=split) as the original does, and
answer {"rows": [content of every row, in order], "selected": [content of
ds.shuffle(seed=seed).select(range(k))], "from_dict": [the same selection
from Dataset.from_dict({"content": rows})]}. Prints one JSON list.
"""
import json
import sys

import datasets


def main():
    jobs = json.load(open(sys.argv[1]))
    out = []
    for j in jobs:
        ds = datasets.load_dataset(j["id"], split=j["split"])
        rows = list(ds["content"])
        k = min(j["k"], len(ds))
        sel = list(ds.shuffle(seed=j["seed"]).select(range(k))["content"])
        fd = datasets.Dataset.from_dict({"content": rows}).shuffle(seed=j["seed"]).select(range(k))
        out.append({"rows": rows, "selected": sel, "from_dict": list(fd["content"])})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
