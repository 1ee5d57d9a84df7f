"""Writes documents as Hugging Face datasets stores them, for the reader tests
of data/corpus: a parquet file (pyarrow, small row groups so that there are
several) and a gzip-compressed JSON lines file.

usage: tokenizer_write_corpus.py DOCS.json OUTDIR
DOCS.json is a JSON array of strings (or null).
"""
import gzip
import json
import os
import sys

import pyarrow as pa
import pyarrow.parquet as pq


def main():
    docs_path, out = sys.argv[1:3]
    with open(docs_path, encoding="utf-8") as f:
        docs = json.load(f)
    n = len(docs)
    table = pa.table({
        "repo_name": pa.array(["repo%d" % i for i in range(n)]),
        "content": pa.array(docs, type=pa.string()),
        "size": pa.array([len(d or "") for d in docs], type=pa.int64()),
    })
    pq.write_table(table, os.path.join(out, "train-00000-of-00001.parquet"), row_group_size=7)
    with gzip.open(os.path.join(out, "valid.jsonl.gz"), "wt", encoding="utf-8") as f:
        for i, d in enumerate(docs):
            f.write(json.dumps({"repo_name": "repo%d" % i, "content": d, "size": len(d or "")},
                               ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
