"""lswag on a GPU: values against the CPU, the paper's cost figure, NB201 throughput, a profile.

Two steps, because a lent GPU's minutes are few and its CPU values would cost them:

    python benchmarks/gpu.py reference --out benchmarks/gpu_reference.json     # here, on the CPU
    python benchmarks/gpu.py measure --reference benchmarks/gpu_reference.json --out OUT   # on the GPU

``reference`` scores, on the CPU, every proxy of the zoo on three NB201 cells (C=16, N=5, the
built-in digits at 32x32, batch 64) and one AutoFormer-S subnet (224x224, batch 16), and zico and
l_swag on 50 NB201 cells. ``measure`` scores the same on the GPU and prints:

1. every proxy's relative difference GPU vs CPU, and for zico and l_swag (whose 1/σ amplifies
   float reduction order) the Spearman ρ between the two devices' values over the 50 cells;
2. the paper's cost figure: L-SWAG on ``--subnets`` AutoFormer-S subnets at 224², batch 64 (build
   and score, as ``lswag bench`` does), against one plain forward+backward of the same subnets
   (the floor), with the peak GPU memory of each; the paper needs 31 min for 1000 on an RTX 3090 Ti;
3. NB201 cells per second with l_swag and with the whole zoo (batch 64, 32²);
4. the torch profiler's view of one AutoFormer-S l_swag score: the host-side operations by self
   CPU time and the device-to-host syncs (``aten::item``, ``aten::_local_scalar_dense``,
   ``cudaStreamSynchronize``, device-to-host copies), written to OUT/profile.txt.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from lswag import proxies, spaces
from lswag.engine import Prepared
from lswag.proxies import Failure
from lswag.settings import Scoring

NB201_BUILD = {"C": 16, "N": 5}
#: where ``measure`` runs: cuda, or the CPU for a dry run of the script (``--dry-run``) before a GPU is spent
DEVICE = {"name": "cuda"}
#: AutoFormer-S at its input size; the batch of the values check (the cost figure uses 64)
VIT_CHECK_BATCH = 16
PAPER_MINUTES_PER_1000 = 31.0


def nb201_setup(device: str, proxies_=("all",), batch_size: int = 64) -> Scoring:
    return Scoring("nb201", tuple(proxies_), batch_size=batch_size, build=NB201_BUILD, device=device)


def vit_setup(device: str, proxies_=("all",), batch_size: int = VIT_CHECK_BATCH) -> Scoring:
    return Scoring("autoformer-s", tuple(proxies_), batch_size=batch_size, device=device)


def value_of(value) -> float | str:
    return value.reason if isinstance(value, Failure) else float(value)


def score_values(setup: Scoring, archs: list[str]) -> dict[str, dict[str, float | str]]:
    """``{arch: {proxy: value or failure reason}}``, each architecture scored as ``lswag bench`` scores it."""
    prepared = Prepared(setup, setup.batch())
    return {arch: {r.name: value_of(r.value) for r in prepared.score(prepared.network(arch), setup.names)}
            for arch in archs}


def cells(n: int, seed: int) -> list[str]:
    space = spaces.get("nb201")
    return [space.format(c) for c in space.sample(n, seed=seed)]


def subnets(n: int, seed: int) -> list[str]:
    space = spaces.get("autoformer-s")
    return [space.format(c) for c in space.sample(n, seed=seed)]


def reference(args) -> None:
    torch.manual_seed(0)
    out = {"nb201_cells": cells(3, 0), "vit_subnet": subnets(1, 0)[0], "rank_cells": cells(args.rank_cells, 1),
           "torch": torch.__version__}
    start = time.perf_counter()
    out["nb201_zoo"] = score_values(nb201_setup("cpu"), out["nb201_cells"])
    out["vit_zoo"] = score_values(vit_setup("cpu"), [out["vit_subnet"]])
    out["rank"] = score_values(nb201_setup("cpu", ("zico", "l_swag")), out["rank_cells"])
    out["seconds"] = time.perf_counter() - start
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"reference values written to {args.out} ({out['seconds']:.0f} s)")


def relative(gpu, cpu) -> str:
    if isinstance(gpu, str) or isinstance(cpu, str):
        return "both failed" if isinstance(gpu, str) and isinstance(cpu, str) else f"gpu {gpu!r} / cpu {cpu!r}"
    return f"{abs(gpu - cpu) / max(abs(cpu), 1e-300):.1e}"


def compare_values(ref: dict, report: list[str]) -> None:
    report.append("## 1. Values on the GPU against the CPU (relative difference)\n")
    gpu_nb201 = score_values(nb201_setup(DEVICE["name"]), ref["nb201_cells"])
    gpu_vit = score_values(vit_setup(DEVICE["name"]), [ref["vit_subnet"]])
    columns = [("nb201 cell %d" % (i + 1), gpu_nb201[c], ref["nb201_zoo"][c]) for i, c in enumerate(ref["nb201_cells"])]
    columns.append(("autoformer-s", gpu_vit[ref["vit_subnet"]], ref["vit_zoo"][ref["vit_subnet"]]))
    report.append("| proxy | " + " | ".join(c[0] for c in columns) + " |")
    report.append("|---" * (len(columns) + 1) + "|")
    for name in proxies.names():
        report.append(f"| {name} | " + " | ".join(relative(g[name], c[name]) for _, g, c in columns) + " |")
    gpu_rank = score_values(nb201_setup(DEVICE["name"], ("zico", "l_swag")), ref["rank_cells"])
    for name in ("zico", "l_swag"):
        pairs = [(gpu_rank[a][name], ref["rank"][a][name]) for a in ref["rank_cells"]]
        both = [(g, c) for g, c in pairs if isinstance(g, float) and isinstance(c, float)]
        rho = spearmanr([g for g, _ in both], [c for _, c in both]).statistic
        failures = sum(isinstance(g, str) != isinstance(c, str) for g, c in pairs)
        median = float(np.median([abs(g - c) / abs(c) for g, c in both]))
        report.append(f"\n{name} over {len(pairs)} NB201 cells: Spearman rho GPU vs CPU {rho:.4f}; median relative "
                      f"difference {median:.1e}; failing on one device only: {failures}")


def synchronise() -> None:
    if DEVICE["name"] == "cuda":
        torch.cuda.synchronize()


def synchronised(function) -> float:
    synchronise()
    start = time.perf_counter()
    function()
    synchronise()
    return time.perf_counter() - start


def peak_gib() -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if DEVICE["name"] == "cuda" else float("nan")


def reset_peak() -> None:
    if DEVICE["name"] == "cuda":
        torch.cuda.reset_peak_memory_stats()


def plain_step(prepared: Prepared, arch: str) -> None:
    """Build the network and run one forward+backward on the batch: the floor of any gradient proxy."""
    model = prepared.network(arch)(prepared.inputs.num_classes).to(DEVICE["name"]).train()
    x = prepared.inputs.x.to(DEVICE["name"])
    F.cross_entropy(model(x), prepared.inputs.y.to(DEVICE["name"])).backward()


def cost_figure(count: int, report: list[str]) -> None:
    setup = vit_setup(DEVICE["name"], ("l_swag",), batch_size=64)
    prepared = Prepared(setup, setup.batch())
    archs = subnets(count, 1)
    prepared.score(prepared.network(archs[0]), ["l_swag"])          # warm-up: kernels, allocator
    plain_step(prepared, archs[0])
    reset_peak()
    scored = synchronised(lambda: [prepared.score(prepared.network(a), ["l_swag"]) for a in archs])
    peak_score = peak_gib()
    reset_peak()
    floor = synchronised(lambda: [plain_step(prepared, a) for a in archs])
    peak_floor = peak_gib()
    per = scored / count
    report.append("\n## 2. The paper's cost figure: L-SWAG on AutoFormer-S subnets, 224², batch 64\n")
    report.append(f"{count} subnets: {scored:.1f} s, {per:.3f} s per subnet (build + score), "
                  f"peak {peak_score:.2f} GiB; 1000 subnets at this rate: {1000 * per / 60:.1f} min "
                  f"(the paper: {PAPER_MINUTES_PER_1000:.0f} min on an RTX 3090 Ti)")
    report.append(f"floor (build + one plain forward+backward): {floor / count:.3f} s per subnet, "
                  f"peak {peak_floor:.2f} GiB; L-SWAG costs {scored / floor:.2f} floors")


def nb201_throughput(l_swag_cells: int, zoo_cells: int, report: list[str]) -> None:
    report.append("\n## 3. NB201 cells per second on the GPU (C=16, N=5, batch 64, 32²)\n")
    for label, names, count in (("l_swag", ("l_swag",), l_swag_cells), ("whole zoo", ("all",), zoo_cells)):
        setup = nb201_setup(DEVICE["name"], names)
        prepared = Prepared(setup, setup.batch())
        archs = cells(count + 1, 7)
        prepared.score(prepared.network(archs[0]), setup.names)      # warm-up
        seconds = synchronised(lambda: [prepared.score(prepared.network(a), setup.names) for a in archs[1:]])
        report.append(f"{label}: {count} cells in {seconds:.1f} s, {count / seconds:.2f} cells/s "
                      f"(all 15,625 cells: {15625 / (count / seconds) / 3600:.2f} h)")


def profile(out: Path, report: list[str]) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    setup = vit_setup(DEVICE["name"], ("l_swag",), batch_size=64)
    prepared = Prepared(setup, setup.batch())
    arch = subnets(1, 2)[0]
    prepared.score(prepared.network(arch), ["l_swag"])               # warm-up
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if DEVICE["name"] == "cuda" else [])
    with torch_profile(activities=activities) as run:
        wall = synchronised(lambda: prepared.score(prepared.network(arch), ["l_swag"]))
    events = run.key_averages()
    table = events.table(sort_by="self_cpu_time_total", row_limit=30)
    (out / "profile.txt").write_text(table + "\n\n" + events.table(sort_by="self_cuda_time_total", row_limit=20))
    syncs = {e.key: (e.count, e.self_cpu_time_total / 1e3) for e in events
             if e.key in ("aten::item", "aten::_local_scalar_dense", "cudaStreamSynchronize", "cudaDeviceSynchronize",
                          "aten::to", "aten::copy_", "cudaMemcpyAsync", "aten::unique_consecutive", "aten::unique",
                          "aten::sort", "aten::nonzero")}
    gpu_busy = sum(e.self_device_time_total for e in events) / 1e6
    report.append("\n## 4. Profile of one AutoFormer-S l_swag score (batch 64, 224²)\n")
    report.append(f"wall {wall:.3f} s; GPU kernels busy {gpu_busy:.3f} s ({100 * gpu_busy / wall:.0f}% of the wall)")
    for key, (count, ms) in sorted(syncs.items(), key=lambda kv: -kv[1][1]):
        report.append(f"  {key:<28} {count:6d} calls  {ms:9.1f} ms self CPU")
    report.append("(top operations by self CPU time in profile.txt)")


def measure(args) -> None:
    if args.dry_run:
        DEVICE["name"] = "cpu"
    elif not torch.cuda.is_available():
        raise SystemExit("measure needs a GPU: PyTorch sees none here (--dry-run runs the script on the CPU)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    wanted = args.only or ["values", "cost", "throughput", "profile"]
    ref = json.loads(Path(args.reference).read_text()) if "values" in wanted else {"torch": "(not read)"}
    card = torch.cuda.get_device_name() if DEVICE["name"] == "cuda" else "the CPU (dry run)"
    report = [f"# lswag on {card} (torch {torch.__version__}; CPU reference: torch "
              f"{ref['torch']})\n"]
    steps = [("values", lambda: compare_values(ref, report)), ("cost", lambda: cost_figure(args.subnets, report)),
             ("throughput", lambda: nb201_throughput(args.cells, args.zoo_cells, report)),
             ("profile", lambda: profile(out, report))]
    for name, step in steps:
        if name not in wanted:
            continue
        start = time.perf_counter()
        step()
        print(f"[{name}: {time.perf_counter() - start:.0f} s]", flush=True)
        (out / "gpu_report.md").write_text("\n".join(report) + "\n")   # each finished part is kept
    print("\n".join(report))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    ref = commands.add_parser("reference", help="the CPU values (run here)")
    ref.add_argument("--out", default="benchmarks/gpu_reference.json")
    ref.add_argument("--rank-cells", type=int, default=50)
    ref.set_defaults(run=reference)
    gpu = commands.add_parser("measure", help="everything on the GPU")
    gpu.add_argument("--reference", default="benchmarks/gpu_reference.json")
    gpu.add_argument("--out", required=True)
    gpu.add_argument("--subnets", type=int, default=100)
    gpu.add_argument("--cells", type=int, default=200, help="NB201 cells timed with l_swag")
    gpu.add_argument("--zoo-cells", type=int, default=30, help="NB201 cells timed with the whole zoo")
    gpu.add_argument("--only", nargs="*", choices=("values", "cost", "throughput", "profile"))
    gpu.add_argument("--dry-run", action="store_true", help="run on the CPU, to check the script before a GPU")
    gpu.set_defaults(run=measure)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
