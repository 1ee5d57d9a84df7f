"""Reference for the Go safetensors package tests (safetensors/).

  safetensors_check.py write PATH   write a reference file with
                                    safetensors.torch and describe it
  safetensors_check.py read PATH    read PATH with safetensors.torch and
                                    safetensors.numpy and describe it

A description is JSON on stdout:
  {"metadata": {...} or null,
   "tensors": {name: {"dtype": "F32", "shape": [..], "hex": raw LE bytes}},
   "numpy_checked": number of tensors numpy read identically (read only),
   "resave_identical": whether safetensors.torch.save of the loaded tensors
                       and metadata reproduces the file byte for byte, up to
                       the order of the metadata keys (a Rust HashMap's)}
"""

import json
import struct
import sys

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import load_file as np_load_file
from safetensors.torch import load_file, save, save_file


def raw(t):
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def describe(path):
    tensors = load_file(path)
    out = {"tensors": {}}
    with safe_open(path, framework="pt") as f:
        out["metadata"] = f.metadata()
        for name in f.keys():
            s = f.get_slice(name)
            out["tensors"][name] = {
                "dtype": s.get_dtype(),
                "shape": list(s.get_shape()),
                "hex": raw(tensors[name]).hex(),
            }
    return out, tensors


def canonical(data):
    """The file's bytes, with the metadata keys of the header sorted."""
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n], object_pairs_hook=list)
    header = [(k, sorted(v) if k == "__metadata__" else v) for k, v in header]
    return n, header, data[8 + n :]


def reference_tensors():
    g = torch.Generator().manual_seed(1234)
    r = lambda *shape: torch.randn(*shape, generator=g)
    return {
        "f32": r(2, 3),
        "f64": r(4).double(),
        "f16": r(3, 2).half(),
        "bf16": r(5).bfloat16(),
        "i64": torch.tensor([-(2**62), -1, 0, 7], dtype=torch.int64),
        "i32": torch.arange(-3, 3, dtype=torch.int32).reshape(2, 3),
        "i16": torch.tensor([-300, 300], dtype=torch.int16),
        "i8": torch.tensor([-128, 0, 127], dtype=torch.int8),
        "u8": torch.tensor([0, 1, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(3.25),
        "empty": torch.zeros(0, 4),
        "empty_i64": torch.zeros(3, 0, dtype=torch.int64),
        "layer.0.weight": r(2, 2, 2),
    }


def main():
    cmd, path = sys.argv[1], sys.argv[2]
    if cmd == "write":
        meta = {"format": "pt", "note": 'ünïcode & <tags> "quoted"\n', "step": "42"}
        save_file(reference_tensors(), path, metadata=meta)
        out, _ = describe(path)
    elif cmd == "read":
        out, tensors = describe(path)
        checked = 0
        with safe_open(path, framework="np") as f:
            for name in f.keys():
                if out["tensors"][name]["dtype"] in ("BF16",) or out["tensors"][name]["dtype"].startswith("F8"):
                    continue  # numpy has no such dtype
                a = f.get_tensor(name)
                b = np.ascontiguousarray(a).tobytes()
                if b.hex() != out["tensors"][name]["hex"] or list(a.shape) != out["tensors"][name]["shape"]:
                    sys.exit(f"numpy and torch disagree on {name}")
                checked += 1
        out["numpy_checked"] = checked
        with open(path, "rb") as fh:
            data = fh.read()
        resaved = save(tensors, metadata=out["metadata"])
        out["resave_identical"] = canonical(resaved) == canonical(data)
    else:
        sys.exit(f"unknown command {cmd!r}")
    json.dump(out, sys.stdout, sort_keys=True)


if __name__ == "__main__":
    main()
