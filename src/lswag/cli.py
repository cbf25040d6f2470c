"""The ``lswag`` command line: parses arguments and calls the library, nothing else."""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

from lswag import __version__, proxies, spaces
from lswag.settings import DEVICES, DUPLICATES, EXECUTORS, LIBRA_POOL, OPTIMIZERS, SOURCES, STRATEGIES, Scoring, TruthSource, parse_build_options, parse_options
from lswag.bench import BenchConfig, read_tables, run_bench, write_outputs
from lswag.engine import score_architecture
from lswag.data import load_dataset
from lswag.demo import run_demo
from lswag.errors import LswagError
from lswag.layers import analyse_layers, plot_profile
from lswag.libra import evaluate, read_scores, write_evaluation
from lswag import minibench
from lswag.plots import heatmap
from lswag.probe import INITS, PASS_OF_NEED
from lswag.proxies import Failure
from lswag.search import Budget, SearchConfig, load_result, search
from lswag.train import Recipe, train


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2, no usage dump)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _value_text(value) -> str:
    return str(value) if isinstance(value, Failure) else f"{value:.6g}"


def _scoring(args, proxies, seed: int) -> Scoring:
    """The one settings object of a scoring command, from its probe arguments (:func:`_add_probe_arguments`)."""
    return Scoring(args.space, tuple(proxies), data=args.data, batch_size=args.batch_size, seed=seed,
                   image_size=args.image_size, gradient_draws=args.draws, init=args.init,
                   options=parse_options(args.option), build=parse_build_options(args.build),
                   device=args.device)


def _truth(args) -> TruthSource | None:
    """The ground truth of a command's truth arguments (:func:`_add_truth_arguments`), or None without one."""
    if args.truth is None:
        if args.metric is not None:
            raise LswagError("--metric needs --truth (the file it is a column of)")
        return None
    if args.metric is None:
        raise LswagError(f"--truth {args.truth} needs --metric: the column used as accuracy")
    return TruthSource(args.truth, args.metric.split(",")[0], dataset=args.dataset, arch_column=args.arch_column,
                       column_names=tuple(args.column_names.split(",")) if args.column_names else None,
                       duplicates=args.duplicates)


def _cmd_score(args) -> None:
    setup = _scoring(args, args.proxies.split(","), args.seed)
    arch, results = score_architecture(setup, args.arch, download=args.download, fail_fast=args.fail_fast)
    options = setup.resolved_options
    space = setup.search_space
    for r in results:
        if r.warning:
            print(f"lswag: warning: {r.warning}", file=sys.stderr)
    if args.format == "json":
        print(json.dumps({
            "space": args.space, "arch": space.format(arch), "data": args.data,
            "batch_size": args.batch_size, "image_size": args.image_size, "seed": args.seed,
            "gradient_draws": args.draws, "init": args.init,
            "options": options, "build": setup.build, "lswag_version": __version__,
            "results": [{"proxy": r.name,
                         "value": None if r.failed else r.value,
                         "failure": r.value.reason if r.failed else None,
                         "warning": r.warning,
                         "seconds": r.seconds} for r in results],
        }, indent=2))
        return
    print(f"{args.space} {space.format(arch)}  (data {args.data}, batch {args.batch_size}, seed {args.seed})")
    for name, chosen in options.items():
        print(f"{name} options: " + ", ".join(f"{k}={v!r}" for k, v in chosen.items()))
    width = max(len(r.name) for r in results)
    print(f"{'proxy':<{width}}  {'value':>14}  {'seconds':>8}")
    for r in results:
        print(f"{r.name:<{width}}  {_value_text(r.value):>14}  {r.seconds:8.3f}")


def _cmd_bench(args) -> None:
    config = BenchConfig(_scoring(args, args.proxies.split(","), args.seed), _truth(args), args.n)
    start = time.perf_counter()
    reports = run_bench(config, args.store, workers=args.workers, executor=args.executor,
                        ray_address=args.ray_address, fail_fast=args.fail_fast)
    wall = time.perf_counter() - start
    rows = sorted(reports, key=lambda r: (math.isnan(r.correlation.spearman), -r.correlation.spearman))
    n = rows[0].correlation.n if rows else 0
    print(f"{args.space}: {n} architectures vs {args.metric} ({args.truth}); data {args.data}, "
          f"batch {args.batch_size}, seed {args.seed}; {wall:.1f} s")
    if rows and rows[0].skipped:
        print(f"{rows[0].skipped} rows of {args.truth} have no {args.metric} (empty, NaN or the failure sentinel) "
              "and are left out")
    width = max(len(r.proxy) for r in rows)
    print(f"{'proxy':<{width}}  {'spearman':>8} {'95% CI':>15}  {'kendall':>8} {'95% CI':>15}  "
          f"{'failures':>8}  {'s/arch':>7}")
    for r in rows:
        c = r.correlation
        undefined = math.isnan(c.spearman)   # then the note says why (constant, all failed), in place of nan
        ranks = (f"{c.note:<50}" if undefined else
                 f"{c.spearman:8.3f} [{c.spearman_ci[0]:6.3f},{c.spearman_ci[1]:6.3f}]  "
                 f"{c.kendall:8.3f} [{c.kendall_ci[0]:6.3f},{c.kendall_ci[1]:6.3f}]")
        print(f"{r.proxy:<{width}}  {ranks}  {c.failures:8d}  {r.mean_seconds:7.3f}"
              + (f"  {c.note}" if c.note and not undefined else ""))
    if args.out:
        path = write_outputs(reports, args.out, benchmark=args.metric)
        print(f"table and figures written to {path.parent}")


def _cmd_heatmap(args) -> None:
    path = heatmap(read_tables(args.tables), args.out)
    print(f"heatmap written to {path}")


def _split_setting(text: str) -> tuple[str, str]:
    key, equals, value = text.partition("=")
    if not equals or not key:
        raise LswagError(f"a setting is KEY=VALUE (e.g. data=digits), got {text!r}")
    return key, value


def _cmd_libra(args) -> None:
    table = read_scores(args.scores, metric=args.metric, truth=args.truth, space=args.space,
                        arch_column=args.arch_column, dataset=args.dataset,
                        setting=dict(_split_setting(text) for text in args.setting), duplicates=args.duplicates,
                        column_names=args.column_names.split(",") if args.column_names else None,
                        proxies=args.proxies.split(",") if args.proxies else None).sample(args.n, args.seed)
    options = {"tolerance": args.tolerance, "max_tolerance": args.max_tolerance, "bins": int(args.bins) if args.bins.isdigit() else args.bins,
               "bias_feature": args.bias, "bias_method": args.bias_method, "combination": args.combination}
    if args.proxies:
        options["proxies"] = args.proxies.split(",")
    if table.skipped:
        print(f"{table.skipped} rows have no {args.metric} (empty, NaN or the failure sentinel) and are left out")
    evaluation = evaluate(table, calibration=args.calibration, splits=args.splits, seed=args.seed, **options)
    print(evaluation.libra.explain())
    print()
    print(evaluation.table())
    if args.out:
        csv_path, figure = write_evaluation(evaluation, args.out)
        print(f"table written to {csv_path}, figure to {figure}")


def _cmd_layers(args) -> None:
    analysis = analyse_layers(_scoring(args, ("l_swag",), args.seed), n=args.n, truth=_truth(args))
    print(f"{args.space}: {analysis.n} architectures, data {args.data}, batch {args.batch_size}, seed {args.seed}")
    print("percentile  mean Ψ   std Ψ" + ("   rho(Σ Ψ)  rho(l_swag [p,p])" if analysis.rho_window else ""))
    for p in range(1, len(analysis.mean_psi) + 1):
        line = f"{p:>10}  {analysis.mean_psi[p - 1]:6.2f}  {analysis.std_psi[p - 1]:6.2f}"
        if analysis.rho_window:
            line += f"   {analysis.rho_gradient[p - 1]:8.3f}  {analysis.rho_window[(p, p)]:17.3f}"
        print(line)
    print(f"proposed window [{analysis.proposed[0]}, {analysis.proposed[1]}]: {analysis.reason}")
    if args.out:
        plot_profile(analysis, Path(args.out) / "layer_profile.png", title=f"{args.space} gradient statistic")
        print(f"figure written to {Path(args.out) / 'layer_profile.png'}")


def _cmd_spaces(args) -> None:
    width = max(map(len, spaces.names()))
    for name in spaces.names():
        space = spaces.get(name)
        print(f"{name:<{width}}  {space.size():>25,} architectures  {space.description}")


def _cmd_proxies(args) -> None:
    width = max(map(len, proxies.names()))
    for name in proxies.names():
        entry = proxies.get(name)
        options = ", ".join(f"{k}={v!r}" for k, v in entry.defaults.items())
        passes = sorted({PASS_OF_NEED[need] for need in entry.needs}) + ([f"own: {entry.own_pass}"] if entry.own_pass else [])
        passes = ", ".join(passes) or "none (weights only)"
        print(f"{name:<{width}}  {entry.summary}  [cost: {entry.cost}; passes: {passes}]"
              + (f"  [options: {options}]" if options else ""))


def _cmd_demo(args) -> None:
    report = run_demo(args.out, table=args.table or minibench.TABLE, n=args.n, population=args.population,
                      generations=args.generations, calibration=args.calibration, workers=args.workers, seed=args.seed,
                      device=args.device)
    meta = minibench.load_metadata(report.table)
    print(f"lswag demo: {report.cells} NB201 cells (C={meta['build']['C']}, N={meta['build']['N']}) trained on "
          f"{meta['data']} {meta['image_size']}x{meta['image_size']} for {meta['recipe']['epochs']} epochs, "
          f"{len(meta['seeds'])} seeds (the embedded mini-benchmark, {report.table.name})")
    print(f"\nSpearman rho and Kendall tau of each proxy with the cells' test accuracy "
          f"(batch 64 of {meta['data']}, seed {args.seed}):")
    print(f"{'proxy':<10} {'spearman':>9} {'95% CI':>16} {'kendall':>8} {'s/cell':>7}")
    for r in sorted(report.correlations, key=lambda r: -r.correlation.spearman):
        c = r.correlation
        print(f"{r.proxy:<10} {c.spearman:9.3f} [{c.spearman_ci[0]:6.3f},{c.spearman_ci[1]:6.3f}] {c.kendall:8.3f} "
              f"{r.mean_seconds:7.3f}")
    evaluation = report.libra
    print(f"\n{evaluation.libra.explain()}")
    for method in ("LIBRA", "best single proxy", "rank average (all proxies)"):
        r = evaluation.result(method)
        print(f"  {method:<27} in-sample {r.in_sample:.3f}, held-out {r.held_out:.3f} ± {r.held_out_std:.3f} "
              f"(fit on {evaluation.calibration}, {evaluation.splits} splits)")
    print(f"\nsearches among the table's cells ({args.population} x {args.generations} candidates; "
          f"best cell of the table: {report.best_accuracy:.2f}%):")
    for result in report.searches:
        key = f"{result.strategy} {result.fitness}"
        print(f"  {key:<18} {result.truth[meta['metric']]:6.2f}%  rank {report.ranks[key]:>3} of {report.cells}  "
              f"{result.arch}")
    print(f"\ntables, plots and search results in {report.folder}/ ({report.seconds:.0f} s; "
          "rerunning reads its store)")
    print(f"train the l_swag result: lswag train --from {report.folder}/search-evolution-l_swag.json --image-size "
          f"{meta['image_size']}")


def _cmd_search(args) -> None:
    budget = Budget(args.min_params, args.max_params, args.min_flops, args.max_flops)
    config = SearchConfig(
        scoring=_scoring(args, ("l_swag",), args.score_seed), strategy=args.strategy, fitness=args.fitness, evaluations=args.evaluations,
        population=args.population, generations=args.generations, parents=args.parents,
        mutation_prob=args.mutation_prob, crossover_prob=args.crossover_prob, seed=args.seed, budget=budget,
        truth=_truth(args), more_metrics=tuple(m for m in (args.metric or "").split(",") if m)[1:],
        calibration=args.calibration, libra_pool=tuple(args.libra_pool.split(",")) if args.libra_pool else LIBRA_POOL,
        also=tuple(p for p in (args.also or "").split(",") if p))
    store = args.store or f"runs/search-{args.space}.sqlite"
    Path(store).parent.mkdir(parents=True, exist_ok=True)
    result = search(config, store, workers=args.workers, executor=args.executor, ray_address=args.ray_address,
                    fail_fast=args.fail_fast)
    if result.libra:
        print(result.libra)
    print(f"{result.strategy} search of {result.space} by {result.fitness}: {result.evaluations} candidates evaluated"
          + (f", {result.failures} failed (ranked last)" if result.failures else "")
          + (f", {result.skipped} skipped (params or FLOPs failed)" if result.skipped else "")
          + f"; {result.wall_seconds:.1f} s in this run, {result.scoring_seconds:.1f} s of scoring in all")
    print(f"best: {result.arch}")
    scores = ", ".join(f"{k} {v:.6g}" if v is not None else f"{k} failed" for k, v in result.scores.items())
    print(f"  {scores}")
    for metric, value in result.truth.items():
        print(f"  {metric}: {value if value is None else f'{value:.2f}'} (ground truth, {args.truth})")
    out = Path(args.out) if args.out else Path(store).with_name(f"search-{args.space}-{args.strategy}-{args.fitness}-seed{args.seed}.json")
    print(f"result written to {result.save(out)} (rebuild: lswag train --from {out})")


def _cmd_train(args) -> None:
    if args.result:
        found = load_result(args.result)
        space_name, arch, build = found["space"], found["arch"], found["build"]
    elif args.arch:
        space_name, arch, build = args.space, args.arch, parse_build_options(args.build)
    else:
        raise LswagError("lswag train needs --arch (with --space) or --from a search result")
    space = spaces.get(space_name)
    space.check_build_options(build)
    image_size = args.image_size or space.input_shape[1:]
    train_set = load_dataset(args.data, "train", image_size=image_size, download=args.download)
    test_set = load_dataset(args.data, "test", image_size=image_size, download=args.download)
    probe = test_set.batch([0])
    if space.task_loss(**build) != "cross_entropy" or space.prepare(probe, **build) is not probe:
        raise LswagError(f"lswag train trains image classifiers on their labels; {space_name} "
                         f"{' '.join(f'{k}={v}' for k, v in build.items())} needs its task's own inputs and targets "
                         "(TransNAS-Bench-101's Taskonomy data), which lswag cannot train on")
    model = space.build(arch, num_classes=train_set.num_classes, seed=args.seed, **space.sized_build(build, probe.x))
    optimizer = space.optimizer if args.optimizer == "auto" else args.optimizer
    augment = args.data.startswith("cifar") if args.augment is None else args.augment
    recipe = Recipe(optimizer=optimizer, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                    weight_decay=args.weight_decay, augment=augment, seed=args.seed)
    describe = {"space": space_name, "arch": space.format(arch), "build": build}
    result = train(model, train_set, test_set, recipe, checkpoint=args.checkpoint, describe=describe,
                   device=args.device)
    resumed = f", resumed after epoch {result.resumed_from}" if result.resumed_from else ""
    print(f"{space_name} {space.format(arch)}: test accuracy {result.test_accuracy:.2f}% on {len(test_set)} images "
          f"after {result.epochs} epochs ({recipe.optimizer}, lr {recipe.lr:g}, batch {recipe.batch_size}; "
          f"{result.seconds:.1f} s{resumed})" + (f"; checkpoint {args.checkpoint}" if args.checkpoint else ""))


def _cmd_make_bench(args) -> None:
    command = "lswag make-bench " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["make-bench"] else ""
    path = minibench.make_bench(args.out, n=args.n, seed=args.seed, command=command)
    meta = minibench.load_metadata(path)
    print(f"{path}: {meta['cells']} NB201 cells trained on {meta['data']} ({meta['wall_seconds']:.0f} s in all); "
          f"recipe in {minibench.metadata_path(path)}")


INIT_HELP = ("weights: given (the builder's, PyTorch default init), kaiming (N(0, 2/fan_in)) "
             "or normal (N(0, 1)), redrawn with --seed")
BUILD_HELP = ("a build option of the space (repeatable): tnb101 task=class_object|class_scene|room_layout|"
              "jigsaw|segmentsemantic|autoencoder|normal; darts/nb301 C=, layers=, auxiliary=, affine=")
DEVICE_HELP = "where networks are scored: auto (a GPU when there is one), cpu or cuda"
DATA_HELP = f"input batch source: {', '.join(SOURCES)} (default digits, built in)"


def _add_probe_arguments(parser: argparse.ArgumentParser, *, proxy_options: bool = True) -> None:
    """The inputs, network and device of a scoring command (score, bench, layers, search)."""
    parser.add_argument("--data", default="digits", help=DATA_HELP)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, help="input resolution (default: the space's)")
    parser.add_argument("--draws", type=int, default=2, help="gradient draws M (batch split in M chunks)")
    parser.add_argument("--build", action="append", default=[], metavar="KEY=VALUE", help=BUILD_HELP)
    parser.add_argument("--device", choices=DEVICES, default="auto", help=DEVICE_HELP)
    if proxy_options:
        parser.add_argument("--init", choices=INITS, default="given", help=INIT_HELP)
        parser.add_argument("--option", action="append", default=[], metavar="PROXY.KEY=VALUE",
                            help="a proxy option, e.g. l_swag.window=3-10 (repeatable)")
        parser.add_argument("--fail-fast", action="store_true",
                            help="let an exception in a proxy or a network abort the run (default: it is that "
                                 "proxy's failure, stored with its type and message)")
    else:
        parser.set_defaults(init="given", option=[])


def _add_truth_arguments(parser: argparse.ArgumentParser, *, required: bool, what: str) -> None:
    """The ground truth of a command (bench, layers, search): the file and how to read it."""
    parser.add_argument("--truth", required=required, help=f"ground truth: .csv, .parquet or NAS-Bench-Suite-Zero "
                                                            f".json ({what})")
    parser.add_argument("--metric", required=required, help="the truth column (json: key) used as accuracy")
    parser.add_argument("--dataset", help="dataset to select in truth files that hold several")
    parser.add_argument("--arch-column",
                        help="the truth column with the architecture (default: the space's, arch_str for most)")
    parser.add_argument("--column-names", metavar="A,B,...", help="header of a truth CSV that has none")
    parser.add_argument("--duplicates", choices=DUPLICATES, default="error",
                        help="truth rows of the same architecture (e.g. NB101 seeds): an error, or their mean")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lswag", description="Zero-cost neural architecture search with L-SWAG.")
    parser.add_argument("--version", action="version", version=f"lswag {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    score = commands.add_parser("score", help="score one architecture with zero-cost proxies")
    score.add_argument("--space", default="nb201", help=f"search space ({', '.join(spaces.names())})")
    score.add_argument("--arch", required=True, help="architecture in one of the space's text forms (README, Search spaces)")
    score.add_argument("--proxies", default="l_swag", help="comma-separated proxy names, or 'all'")
    _add_probe_arguments(score)
    score.add_argument("--download", action="store_true", help="download CIFAR into the given path if missing")
    score.add_argument("--seed", type=int, default=0, help="seed of the batch and of the weights")
    score.add_argument("--format", choices=("table", "json"), default="table")
    score.set_defaults(run=_cmd_score)

    bench = commands.add_parser("bench", help="correlate proxies with ground truth on sampled architectures")
    bench.add_argument("--space", default="nb201", help=f"search space ({', '.join(spaces.names())})")
    _add_truth_arguments(bench, required=True, what="the architectures are sampled among its rows")
    bench.add_argument("--n", type=int, default=1000, help="number of architectures (seeded sample)")
    bench.add_argument("--seed", type=int, default=0, help="seed of the sample, the batch and the weights")
    bench.add_argument("--proxies", default="all", help="comma-separated proxy names, or 'all'")
    _add_probe_arguments(bench)
    bench.add_argument("--store", required=True, help="SQLite result store (created, or resumed)")
    bench.add_argument("--workers", type=int, default=1,
                       help="parallel workers: local processes, or the CPUs of a local Ray instance")
    bench.add_argument("--executor", choices=EXECUTORS, default="local",
                       help="local processes, or Ray tasks (needs lswag[ray])")
    bench.add_argument("--ray-address", help="join this Ray cluster ('auto', or HOST:PORT) instead of starting one")
    bench.add_argument("--out", help="folder for the correlation table (CSV), heatmap and rank scatters (PNG)")
    bench.set_defaults(run=_cmd_bench)

    layers = commands.add_parser("layers", help="per-depth gradient statistic and the L-SWAG window it suggests")
    layers.add_argument("--space", default="nb201", help=f"search space ({', '.join(spaces.names())})")
    layers.add_argument("--n", type=int, default=1000, help="number of architectures (seeded sample)")
    _add_truth_arguments(layers, required=False, what="then the window is chosen by Spearman")
    _add_probe_arguments(layers, proxy_options=False)
    layers.add_argument("--seed", type=int, default=0)
    layers.add_argument("--out", help="folder for the profile figure (PNG)")
    layers.set_defaults(run=_cmd_layers)

    heat = commands.add_parser("heatmap", help="one heatmap of proxies x benchmarks from several bench tables")
    heat.add_argument("tables", nargs="+", help="correlations.csv files written by lswag bench --out")
    heat.add_argument("--out", required=True, help="PNG file to write")
    heat.set_defaults(run=_cmd_heatmap)

    libra = commands.add_parser("libra", help="choose three complementary proxies (LIBRA) and evaluate them held-out")
    libra.add_argument("--scores", required=True, nargs="+",
                       help="proxy scores: a CSV table (one row per arch), or one or more lswag bench stores")
    libra.add_argument("--truth", help="ground-truth file (default: the --scores table; required for a store)")
    libra.add_argument("--metric", required=True, help="the truth column used as accuracy")
    libra.add_argument("--dataset", help="rows to select in tables with a dataset or task column")
    libra.add_argument("--space", help="parse and join archs with this space (default: as written; nb201 to join)")
    libra.add_argument("--arch-column", help="the column with the architecture (default: the space's, arch_str for most)")
    libra.add_argument("--column-names", metavar="A,B,...", help="header of a truth CSV that has none")
    libra.add_argument("--duplicates", choices=DUPLICATES, default="error",
                       help="truth rows of the same architecture (e.g. NB101 seeds): an error, or their mean")
    libra.add_argument("--proxies", help="comma-separated candidate proxies (default: every numeric column); from "
                                         "stores only these are read, so archs lacking another proxy still count")
    libra.add_argument("--setting", action="append", default=[], metavar="[PROXY:]KEY=VALUE",
                       help="stores: keep results computed with this setting, e.g. 'data=*cifar10*', or only for one "
                            "proxy, e.g. 'l_swag:options=*log*' (wildcards * ?; repeatable)")
    libra.add_argument("--n", type=int, help="use a seeded sample of N archs (default: all)")
    libra.add_argument("--calibration", type=int, default=100, help="archs LIBRA is fitted on in each split")
    libra.add_argument("--splits", type=int, default=10, help="random calibration/held-out splits")
    libra.add_argument("--seed", type=int, default=0, help="seed of the sample, the splits and random choices")
    libra.add_argument("--tolerance", type=float, default=0.1, help="z2/z3 pool: rho within this of z1's")
    libra.add_argument("--max-tolerance", type=float, default=0.2, help="widen an empty pool up to this")
    libra.add_argument("--bins", default="sturges", help="discretisation: sturges, suite_zero or a bin count")
    libra.add_argument("--bias", default="params", help="the bias feature column")
    libra.add_argument("--bias-method", choices=("rank", "raw"), default="rank",
                       help="rank: Pearson of ranks (paper); raw: Pearson of values (NAS-Bench-Suite-Zero)")
    libra.add_argument("--combination", choices=("rank_sum", "product"), default="rank_sum",
                       help="how z1, z2, z3 are combined")
    libra.add_argument("--out", help="folder for the comparison table (libra.csv) and bar plot (libra.png)")
    libra.set_defaults(run=_cmd_libra)

    commands.add_parser("spaces", help="list the search spaces").set_defaults(run=_cmd_spaces)
    commands.add_parser("proxies", help="list the proxies and their options").set_defaults(run=_cmd_proxies)

    find = commands.add_parser("search", help="zero-shot search: evolution, random or pruning, by a proxy, "
                                              "a rank combination or LIBRA")
    find.add_argument("--space", default="nb201", help=f"search space ({', '.join(spaces.names())})")
    find.add_argument("--strategy", default="evolution", help=f"{', '.join(STRATEGIES)} (default evolution)")
    find.add_argument("--fitness", default="l_swag",
                      help="a proxy, rank:PROXY,PROXY,... (rank averaging), az_nas, te_nas or libra (needs --truth)")
    find.add_argument("--evaluations", type=int,
                      help="candidates to evaluate (evolution: population x generations; random: 1000)")
    find.add_argument("--population", type=int, default=50)
    find.add_argument("--generations", type=int, default=20)
    find.add_argument("--parents", type=int, default=10, help="top candidates that breed each generation")
    find.add_argument("--mutation-prob", type=float, default=0.2, help="per-choice redraw probability of a mutation")
    find.add_argument("--crossover-prob", type=float, default=0.5, help="share of the children made by crossover")
    find.add_argument("--seed", type=int, default=0, help="seed of the search's draws")
    find.add_argument("--score-seed", type=int, default=0, help="seed of the scoring batch and weights (store key)")
    for kind in ("params", "flops"):
        find.add_argument(f"--min-{kind}", type=float, help=f"least {kind} in millions")
        find.add_argument(f"--max-{kind}", type=float, help=f"most {kind} in millions")
    _add_truth_arguments(find, required=False, what="candidates are drawn among its archs and the result looked up; "
                                                    "--metric may name several columns, the first fits LIBRA")
    find.add_argument("--calibration", type=int, default=100, help="archs of the truth a LIBRA fitness is fitted on")
    find.add_argument("--libra-pool", help=f"comma-separated proxies LIBRA chooses from (default {','.join(LIBRA_POOL)})")
    find.add_argument("--also", help="comma-separated proxies also scored with every candidate (kept in the store)")
    _add_probe_arguments(find)
    find.add_argument("--store", help="SQLite result store, shared with lswag bench (default runs/search-SPACE.sqlite)")
    find.add_argument("--workers", type=int, default=1, help="parallel scoring processes (or Ray CPUs)")
    find.add_argument("--executor", choices=EXECUTORS, default="local")
    find.add_argument("--ray-address", help="join this Ray cluster (auto or HOST:PORT)")
    find.add_argument("--out", help="JSON file for the result (default beside the store)")
    find.set_defaults(run=_cmd_search)

    fit = commands.add_parser("train", help="train an architecture (or a search result) with a standard recipe")
    fit.add_argument("--space", default="nb201", help=f"search space ({', '.join(spaces.names())})")
    fit.add_argument("--arch", help="architecture in any text form of the space")
    fit.add_argument("--from", dest="result", metavar="RESULT.json", help="a result written by lswag search")
    fit.add_argument("--build", action="append", default=[], metavar="KEY=VALUE", help=BUILD_HELP)
    fit.add_argument("--data", default="digits", help="digits, cifar10:PATH, cifar100:PATH or npz:PATH")
    fit.add_argument("--download", action="store_true", help="fetch CIFAR into PATH when it is missing")
    fit.add_argument("--image-size", type=int, help="input size (default: the space's)")
    fit.add_argument("--epochs", type=int, default=10)
    fit.add_argument("--batch-size", type=int, default=64)
    fit.add_argument("--optimizer", choices=("auto", *OPTIMIZERS), default="auto",
                     help="auto: the space's (adamw for the ViT spaces, sgd otherwise)")
    fit.add_argument("--lr", type=float, help="learning rate (default 0.1 sgd, 1e-3 adamw)")
    fit.add_argument("--weight-decay", type=float, help="default 5e-4 sgd, 0.05 adamw")
    fit.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                     help="random crop and flip (default: on for CIFAR)")
    fit.add_argument("--seed", type=int, default=0, help="seed of the weights and the batch order")
    fit.add_argument("--checkpoint", help="checkpoint file, written every epoch and resumed from")
    fit.add_argument("--device", choices=DEVICES, default="auto", help="where to train: auto, cpu or cuda")
    fit.set_defaults(run=_cmd_train)

    make = commands.add_parser("make-bench", help="train NB201 cells on the built-in digits: the embedded mini-benchmark")
    make.add_argument("--out", required=True, help="CSV table to write (resumed when it exists)")
    make.add_argument("--n", type=int, default=500, help="number of cells (seeded sample)")
    make.add_argument("--seed", type=int, default=0, help="seed of the sample")
    make.set_defaults(run=_cmd_make_bench)

    demo = commands.add_parser("demo", help="the whole loop offline on the embedded mini-benchmark: score, "
                                            "correlate, LIBRA, search")
    demo.add_argument("--out", default="lswag-demo", help="folder for the store, tables and plots")
    demo.add_argument("--table", help="a table written by lswag make-bench (default: the one shipped with lswag)")
    demo.add_argument("--n", type=int, help="use a seeded sample of N cells (default: all)")
    demo.add_argument("--calibration", type=int, default=100, help="cells LIBRA is fitted on")
    demo.add_argument("--population", type=int, default=20, help="evolution population")
    demo.add_argument("--generations", type=int, default=5, help="evolution generations")
    demo.add_argument("--workers", type=int, help="scoring processes (default: 2, or 1 on one core)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--device", choices=DEVICES, default="auto", help=DEVICE_HELP)
    demo.set_defaults(run=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except LswagError as error:
        print(f"lswag: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
