"""GPU throughput of the PyTorch reference (scripts/reference/model.py and the
reference loop of train.py: eager, bf16 autocast, transformers' AdamW) at the
paper's setting: 18 layers, width 768, context 128, vocabulary 52000, 128
sequences per step. Prints one `go test -bench`-style line per preset with
tokens/s, ms/step, MFU% and peakGiB, like train/gpu_test.go.

With --compile, the strongest PyTorch peer instead (as `make bench-peers` on
the CPU): the same model with SDPA attention (model.set_attention), wrapped in
torch.compile (Inductor, default mode), torch.optim.AdamW(fused=True) with
the same decay groups; lines BenchmarkGPUTrainStepCompile/<preset>, with
compileS: the seconds of the warm-up steps, compilation included.

usage: bench_gpu.py [PRESET,...] [--micro 128] [--precision bf16] [--steps 10] [--compile]
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model as M  # noqa: E402
import train as T  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("presets", nargs="?", default=",".join(M.PRESETS))
    ap.add_argument("--micro", type=int, default=128)
    ap.add_argument("--precision", default="bf16", choices=("bf16", "fp16", "fp32"))
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--compile", action="store_true", help="SDPA + torch.compile + fused AdamW (the strongest peer)")
    ap.add_argument("--peak-tflops", type=float, default=float(os.environ.get("CLM_PEAK_TFLOPS", "989")))
    a = ap.parse_args()
    dev = torch.device("cuda")
    dt = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[a.precision]
    accum = 128 // a.micro
    for preset in a.presets.split(","):
        cfg = M.preset(preset, n_layer=18, vocab_size=52000)
        torch.manual_seed(0)
        net = M.GPT(cfg).to(dev)
        net.train()
        groups = T.param_groups(net, 0.1)
        if a.compile:
            M.set_attention(net, "sdpa")
            plain = [{k: v for k, v in g.items() if k != "names"} for g in groups]
            opt = torch.optim.AdamW(plain, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, fused=True)
            fwd = torch.compile(net)
        else:
            opt = T.make_optimizer("adamw_hf", groups, 1e-3, (0.9, 0.999), 1e-8)
            fwd = net
        params = list(net.parameters())
        g = torch.Generator().manual_seed(7)
        batches = [torch.randint(0, 52000, (a.micro, 128), generator=g).to(dev) for _ in range(accum)]
        scaler = torch.amp.GradScaler("cuda", enabled=a.precision == "fp16")

        def step():
            for ids in batches:
                with torch.autocast("cuda", dtype=dt, enabled=dt is not None):
                    out = fwd(ids, labels=ids)
                scaler.scale(out["loss"] / accum).backward()
            scaler.unscale_(opt)
            T.clip_grad_norm(params, 1.0)  # reads the norm back, as the original's logging does
            scaler.step(opt)
            scaler.update()
            net.zero_grad(set_to_none=True)

        t0 = time.perf_counter()
        for _ in range(3):
            step()
        torch.cuda.synchronize()
        warm = time.perf_counter() - t0
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for _ in range(a.steps):
            step()
        torch.cuda.synchronize()
        sec = time.perf_counter() - t0
        total = sum(p.numel() for p in net.parameters())
        flops_per_token = 6 * (total - cfg.n_positions * cfg.n_embd) + 12 * cfg.n_layer * 128 * cfg.n_embd
        tokens = a.steps * 128 * 128
        name = "GPUTrainStepCompile" if a.compile else "GPUTrainStep"
        extra = f"\t{warm:.1f} compileS" if a.compile else ""
        print(f"Benchmark{name}/{preset}\t{a.steps}\t{sec / a.steps * 1e9:.0f} ns/op\t"
              f"{tokens / sec:.0f} tokens/s\t{sec / a.steps * 1e3:.2f} ms/step\t"
              f"{100 * flops_per_token * tokens / sec / (a.peak_tflops * 1e12):.2f} MFU%\t"
              f"{torch.cuda.max_memory_allocated() / 2**30:.2f} peakGiB{extra}", flush=True)
        del net, opt, fwd
        if a.compile:
            torch._dynamo.reset()  # the next preset compiles afresh, within the recompile limit
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
