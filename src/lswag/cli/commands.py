"""One class per ``lswag`` command: its flags (:meth:`Command.add_arguments`) and what it calls in
the library and prints (:meth:`Command.run`). Library modules are imported inside ``run``, so
that building the parser imports neither torch nor scipy."""
from __future__ import annotations

import abc
import argparse
import json
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lswag.cli.flags import add_settings, settings_from
from lswag.errors import LswagError
from lswag.settings import (DEVICES, MAX_SEED, OPTIMIZERS, Budget, Execution, Scoring, SearchConfig, TruthSource,
                            about, check_output, parse_build_options)


def _value_text(value) -> str:
    from lswag.proxies import Failure

    return str(value) if isinstance(value, Failure) else f"{value:.6g}"


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def _format_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("table", "json"), default="table",
                        help="table for reading, json for programs (default table)")


def _integer(low: int, high: int | None = None):
    """An argparse type: an integer in ``low``..``high``; argparse names the flag in its one-line error."""
    bound = f"at least {low}" if high is None else f"in {low}..{high}"

    def integer(text: str) -> int:
        value = int(text)   # not an integer: argparse says "invalid integer value"
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be an integer {bound}, got {text}")
        return value
    return integer


#: an argparse type for seeds (:data:`lswag.settings.MAX_SEED`)
_SEED = _integer(0, MAX_SEED)


def _outputs(*outputs: tuple[str, str | None, bool]) -> None:
    """Check each ``(flag, path, is a folder)`` output before any work: a file where a folder goes, or the
    other way round, is a one-line error naming the flag; nothing is written."""
    for flag, path, folder in outputs:
        if path is not None:
            with about(flag, path):
                check_output(path, folder=folder)


def _truth_of(args, metric_list: bool = False) -> TruthSource | None:
    """The ground truth of a command's truth flags, or None without ``--truth``; ``metric_list``:
    ``--metric`` may name several columns, the first being the truth's metric."""
    if args.truth is None:
        if args.metric is not None:
            raise LswagError("--metric needs --truth (the file it is a column of)")
        return None
    if args.metric is None:
        raise LswagError(f"--truth {args.truth} needs --metric: the column used as accuracy")
    metric = args.metric.split(",")[0] if metric_list else args.metric
    return settings_from(TruthSource, args, metric=metric)


def _correlation_json(report) -> dict[str, Any]:
    c = report.correlation
    return {"proxy": report.proxy, "n": c.n, "failures": c.failures, "spearman": c.spearman,
            "spearman_ci": list(c.spearman_ci), "kendall": c.kendall, "kendall_ci": list(c.kendall_ci),
            "mean_seconds": report.mean_seconds, "note": c.note}


class Command(abc.ABC):
    """A subcommand: ``name``, ``help``, its flags and what it runs."""

    name: str
    help: str

    @abc.abstractmethod
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Declare the command's flags on ``parser``."""

    @abc.abstractmethod
    def run(self, args: argparse.Namespace) -> None:
        """Call the library with the parsed ``args`` and print what it returns."""

    def store_of(self, args: argparse.Namespace) -> str | None:
        """The result store the command writes to, if any (what an interrupted run keeps)."""
        return None


class Score(Command):
    name, help = "score", "score one architecture with zero-cost proxies"

    def add_arguments(self, parser):
        add_settings(parser, Scoring, only=("space",))
        parser.add_argument("--arch", required=True, help="architecture in one of the space's text forms "
                                                          "(README, Search spaces)")
        add_settings(parser, Scoring, skip=("space",))
        add_settings(parser, Execution, only=("fail_fast",))
        parser.add_argument("--download", action="store_true", help="download CIFAR into the given path if missing")
        _format_flag(parser)

    def run(self, args):
        from lswag import __version__
        from lswag.engine import score_architecture

        setup = settings_from(Scoring, args)
        arch, results = score_architecture(setup, args.arch, download=args.download, fail_fast=args.fail_fast)
        space, options = setup.search_space, setup.resolved_options
        for r in results:
            if r.warning:
                print(f"lswag: warning: {r.warning}", file=sys.stderr)
        if args.format == "json":
            _print_json({
                "space": args.space, "arch": space.format(arch), "data": args.data,
                "batch_size": args.batch_size, "image_size": args.image_size, "seed": args.seed,
                "gradient_draws": args.draws, "init": args.init, "device": setup.device,
                "options": options, "build": setup.build, "lswag_version": __version__,
                "results": [{"proxy": r.name, "value": None if r.failed else r.value,
                             "failure": r.value.reason if r.failed else None, "warning": r.warning,
                             "seconds": r.seconds} for r in results]})
            return
        print(f"{args.space} {space.format(arch)}  (data {args.data}, batch {args.batch_size}, seed {args.seed})")
        for name, chosen in options.items():
            print(f"{name} options: " + ", ".join(f"{k}={v!r}" for k, v in chosen.items()))
        width = max(len(r.name) for r in results)
        print(f"{'proxy':<{width}}  {'value':>14}  {'seconds':>8}")
        for r in results:
            print(f"{r.name:<{width}}  {_value_text(r.value):>14}  {r.seconds:8.3f}")


class Bench(Command):
    name, help = "bench", "correlate proxies with ground truth on sampled architectures"

    def add_arguments(self, parser):
        add_settings(parser, Scoring, only=("space",))
        add_settings(parser, TruthSource, required=("path", "metric"))
        parser.add_argument("--n", type=_integer(1), default=1000, help="number of architectures (seeded sample)")
        add_settings(parser, Scoring, skip=("space",), defaults={"proxies": "all"},
                     renamed={"seed": "--seed"})
        parser.add_argument("--store", required=True, help="SQLite result store (created, or resumed)")
        add_settings(parser, Execution)
        parser.add_argument("--out", help="folder for the correlation table (CSV), heatmap and rank scatters (PNG)")
        _format_flag(parser)

    def store_of(self, args):
        return args.store

    def run(self, args):
        from lswag.bench import BenchConfig, run_bench, write_outputs

        config = BenchConfig(settings_from(Scoring, args), _truth_of(args), args.n)
        execution = settings_from(Execution, args)
        _outputs(("--store", args.store, False), ("--out", args.out, True))
        start = time.perf_counter()
        reports = run_bench(config, args.store, execution)
        wall = time.perf_counter() - start
        rows = sorted(reports, key=lambda r: (math.isnan(r.correlation.spearman), -r.correlation.spearman))
        n = rows[0].correlation.n if rows else 0
        skipped = rows[0].skipped if rows else 0
        if args.out:
            path = write_outputs(reports, args.out, benchmark=args.metric)
        if args.format == "json":
            _print_json({"space": args.space, "truth": args.truth, "metric": args.metric, "n": n,
                         "skipped": skipped, "seconds": wall, "proxies": [_correlation_json(r) for r in rows]})
            return
        print(f"{args.space}: {n} architectures vs {args.metric} ({args.truth}); data {args.data}, "
              f"batch {args.batch_size}, seed {args.seed}; {wall:.1f} s")
        if skipped:
            print(f"{skipped} rows of {args.truth} have no {args.metric} (empty, NaN or the failure sentinel) "
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
            print(f"table and figures written to {path.parent}")


class Layers(Command):
    name, help = "layers", "per-depth gradient statistic and the L-SWAG window it suggests"

    def add_arguments(self, parser):
        add_settings(parser, Scoring, only=("space",))
        parser.add_argument("--n", type=_integer(1), default=1000, help="number of architectures (seeded sample)")
        add_settings(parser, TruthSource)
        add_settings(parser, Scoring, only=("data", "batch_size", "image_size", "gradient_draws", "build", "device",
                                            "seed"))
        parser.add_argument("--out", help="folder for the profile figure (PNG)")
        _format_flag(parser)

    def run(self, args):
        from lswag.layers import analyse_layers, plot_profile

        setup, truth = settings_from(Scoring, args), _truth_of(args)
        _outputs(("--out", args.out, True))
        analysis = analyse_layers(setup, n=args.n, truth=truth)
        if args.out:
            plot_profile(analysis, Path(args.out) / "layer_profile.png", title=f"{args.space} gradient statistic")
        if args.format == "json":
            found = asdict(analysis)
            if analysis.rho_window is not None:
                found["rho_window"] = {f"{a}-{b}": rho for (a, b), rho in analysis.rho_window.items()}
            _print_json(found)
            return
        print(f"{args.space}: {analysis.n} architectures, data {args.data}, batch {args.batch_size}, seed {args.seed}")
        print("percentile  mean Ψ   std Ψ" + ("   rho(Σ Ψ)  rho(l_swag [p,p])" if analysis.rho_window else ""))
        for p in range(1, len(analysis.mean_psi) + 1):
            line = f"{p:>10}  {analysis.mean_psi[p - 1]:6.2f}  {analysis.std_psi[p - 1]:6.2f}"
            if analysis.rho_window:
                line += f"   {analysis.rho_gradient[p - 1]:8.3f}  {analysis.rho_window[(p, p)]:17.3f}"
            print(line)
        print(f"proposed window [{analysis.proposed[0]}, {analysis.proposed[1]}]: {analysis.reason}")
        if args.out:
            print(f"figure written to {Path(args.out) / 'layer_profile.png'}")


class Heatmap(Command):
    name, help = "heatmap", "one heatmap of proxies x benchmarks from several bench tables"

    def add_arguments(self, parser):
        parser.add_argument("tables", nargs="+", help="correlations.csv files written by lswag bench --out")
        parser.add_argument("--out", required=True, help="PNG file to write (.png added when it has no suffix)")

    def run(self, args):
        from lswag.bench import read_tables
        from lswag.plots import heatmap

        _outputs(("--out", args.out, False))
        print(f"heatmap written to {heatmap(read_tables(args.tables), args.out)}")


class Libra(Command):
    name, help = "libra", "choose three complementary proxies (LIBRA) and evaluate them held-out"

    def add_arguments(self, parser):
        parser.add_argument("--scores", required=True, nargs="+",
                            help="proxy scores: a CSV table (one row per arch), or one or more lswag bench stores")
        add_settings(parser, TruthSource, required=("metric",))
        parser.add_argument("--space", help="parse and join archs with this space (default: as written; nb201 to join)")
        parser.add_argument("--proxies", help="comma-separated candidate proxies (default: every numeric column); "
                                              "from stores only these are read, so archs lacking another proxy "
                                              "still count")
        parser.add_argument("--setting", action="append", default=[], metavar="[PROXY:]KEY=VALUE",
                            help="stores: keep results computed with this setting, e.g. 'data=*cifar10*', or only "
                                 "for one proxy, e.g. 'l_swag:options=*log*' (wildcards * ?; repeatable)")
        parser.add_argument("--n", type=_integer(3), help="use a seeded sample of N archs (default: all)")
        parser.add_argument("--calibration", type=_integer(3), default=100,
                            help="archs LIBRA is fitted on in each split")
        parser.add_argument("--splits", type=_integer(1), default=10, help="random calibration/held-out splits")
        parser.add_argument("--seed", type=_SEED, default=0, help="seed of the sample, the splits and random choices")
        parser.add_argument("--tolerance", type=float, default=0.1, help="z2/z3 pool: rho within this of z1's "
                                                                        "(default 0.1)")
        parser.add_argument("--max-tolerance", type=float, default=0.2, help="widen an empty pool up to this "
                                                                            "(default 0.2)")
        parser.add_argument("--bins", default="sturges", help="discretisation: sturges, suite_zero or a bin count")
        parser.add_argument("--bias", default="params", help="the bias feature column")
        parser.add_argument("--bias-method", choices=("rank", "raw"), default="rank",
                            help="rank: Pearson of ranks (paper); raw: Pearson of values (NAS-Bench-Suite-Zero)")
        parser.add_argument("--combination", choices=("rank_sum", "product"), default="rank_sum",
                            help="how z1, z2, z3 are combined")
        parser.add_argument("--out", help="folder for the comparison table (libra.csv) and bar plot (libra.png)")
        _format_flag(parser)

    @staticmethod
    def _split_setting(text: str) -> tuple[str, str]:
        key, equals, value = text.partition("=")
        if not equals or not key:
            raise LswagError(f"a setting is KEY=VALUE (e.g. data=digits), got {text!r}")
        return key, value

    def run(self, args):
        from lswag.libra import bins_of, evaluate_held_out, read_scores, write_evaluation

        proxies = args.proxies.split(",") if args.proxies else None
        _outputs(("--out", args.out, True))
        table = read_scores(args.scores, metric=args.metric, truth=args.truth, space=args.space,
                            arch_column=args.arch_column, dataset=args.dataset,
                            setting=dict(self._split_setting(text) for text in args.setting),
                            duplicates=args.duplicates,
                            column_names=args.column_names.split(",") if args.column_names else None,
                            proxies=proxies).sample(args.n, args.seed)
        options = {"tolerance": args.tolerance, "max_tolerance": args.max_tolerance, "bins": bins_of(args.bins),
                   "bias_feature": args.bias, "bias_method": args.bias_method, "combination": args.combination}
        if proxies:
            options["proxies"] = proxies
        evaluation = evaluate_held_out(table, calibration=args.calibration, splits=args.splits, seed=args.seed,
                                       **options)
        if args.out:
            csv_path, figure = write_evaluation(evaluation, args.out, benchmark=args.metric)
        if args.format == "json":
            _print_json({"source": evaluation.source, "metric": evaluation.metric, "n": evaluation.n,
                         "skipped": table.skipped, "calibration": evaluation.calibration,
                         "splits": evaluation.splits, "libra": evaluation.libra.explain(),
                         "failures": {p: {str(a): why for a, why in reasons.items()}
                                      for p, reasons in table.failures.items()},
                         "results": [asdict(r) for r in evaluation.results]})
            return
        if table.skipped:
            print(f"{table.skipped} rows have no {args.metric} (empty, NaN or the failure sentinel) and are left out")
        for proxy, reasons in table.failures.items():
            example = next(iter(reasons.values()))
            print(f"{proxy} failed on {len(reasons)} of {len(table.archs)} archs (ranked last), e.g.: {example}")
        print(evaluation.libra.explain())
        print()
        print(evaluation.table())
        if args.out:
            print(f"table written to {csv_path}, figure to {figure}")


class Spaces(Command):
    name, help = "spaces", "list the search spaces"

    def add_arguments(self, parser):
        _format_flag(parser)

    def run(self, args):
        from lswag import spaces

        rows = [(name, spaces.get(name).size(), spaces.get(name).description) for name in spaces.names()]
        if args.format == "json":
            _print_json([{"name": n, "size": size, "description": d} for n, size, d in rows])
            return
        width = max(len(n) for n, _, _ in rows)
        for name, size, description in rows:
            print(f"{name:<{width}}  {size:>25,} architectures  {description}")


class Proxies(Command):
    name, help = "proxies", "list the proxies and their options"

    def add_arguments(self, parser):
        _format_flag(parser)

    def run(self, args):
        from lswag import proxies
        from lswag.probe import PASS_OF_NEED

        rows = []
        for name in proxies.names(timed=True):
            entry = proxies.get(name)
            passes = sorted({PASS_OF_NEED[need] for need in entry.needs})
            rows.append({"name": name, "summary": entry.summary, "cost": entry.cost, "passes": passes,
                         "own_pass": entry.own_pass, "options": entry.defaults, "version": entry.version,
                         "timed": entry.timed})
        if args.format == "json":
            _print_json(rows)
            return
        width = max(len(r["name"]) for r in rows)
        for r in rows:
            options = ", ".join(f"{k}={v!r}" for k, v in r["options"].items())
            passes = ", ".join(r["passes"] + ([f"own: {r['own_pass']}"] if r["own_pass"] else [])) \
                or "none (weights only)"
            print(f"{r['name']:<{width}}  {r['summary']}  [cost: {r['cost']}; passes: {passes}]"
                  + (f"  [options: {options}]" if options else ""))


class Search(Command):
    name, help = "search", "zero-shot search: evolution, random or pruning, by a proxy, a rank combination or LIBRA"
    #: the scoring's seed has a flag of its own: --seed is the search's
    SCORE_SEED = {"seed": "--score-seed"}

    def add_arguments(self, parser):
        add_settings(parser, Scoring, only=("space",))
        add_settings(parser, SearchConfig)
        add_settings(parser, Budget)
        add_settings(parser, TruthSource)
        add_settings(parser, Scoring, skip=("space", "proxies"), renamed=self.SCORE_SEED)
        parser.add_argument("--store", help="SQLite result store, shared with lswag bench "
                                            "(default runs/search-SPACE.sqlite)")
        add_settings(parser, Execution)
        parser.add_argument("--out", help="JSON file for the result (default beside the store)")
        _format_flag(parser)

    def store_of(self, args):
        from lswag.search import default_store

        return args.store or str(default_store(args.space))

    def run(self, args):
        from lswag.search import default_result_path, search

        metrics = [m for m in (args.metric or "").split(",") if m]
        config = settings_from(SearchConfig, args, scoring=settings_from(Scoring, args, renamed=self.SCORE_SEED),
                               budget=settings_from(Budget, args), truth=_truth_of(args, metric_list=True),
                               more_metrics=tuple(metrics[1:]))
        execution, store = settings_from(Execution, args), self.store_of(args)
        out = Path(args.out or default_result_path(config, store))
        plot = out.with_suffix(".png") if config.minimise else None   # the front's, beside the result
        _outputs(("--store", store, False), ("--out", str(out), False), ("--out", plot and str(plot), False))
        result = search(config, store, execution)
        out = result.save(out)
        if plot is not None:
            from lswag.plots import pareto

            plot = pareto(result, plot)
        if args.format == "json":
            _print_json({**asdict(result), "result_file": str(out), **({"plot": str(plot)} if plot else {})})
            return
        if result.libra:
            print(result.libra)
        # a resumed search reads its scores from the store: its wall time says nothing of the scoring
        timing = (f"{result.wall_seconds:.1f} s in this run, {result.scoring_seconds:.1f} s of scoring in all"
                  if result.new_results else
                  f"every score read from the store ({result.scoring_seconds:.1f} s of scoring when computed)")
        print(f"{result.strategy} search of {result.space} by {result.fitness}: {result.evaluations} candidates "
              "evaluated" + (f", {result.failures} failed (ranked last)" if result.failures else "")
              + (f", {result.skipped} skipped (params or FLOPs failed)" if result.skipped else "") + f"; {timing}")
        print(f"best: {result.arch}")
        print("  " + ", ".join(f"{k} {v:.6g}" if v is not None else f"{k} failed" for k, v in result.scores.items()))
        for metric, value in result.truth.items():
            print(f"  {metric}: {value if value is None else f'{value:.2f}'} (ground truth, {args.truth})")
        if plot is not None:
            self.print_front(result, args.truth)
            print(f"front plotted in {plot}")
        if result.settings.get("optuna_study"):
            storage = result.settings.get("optuna_storage")
            print(f"Optuna study {result.settings['optuna_study']}"
                  + (f" in {storage} (optuna-dashboard {storage})" if storage else " (in memory: give --optuna-storage "
                                                                                    "to keep it)"))
        if result.settings.get("stopped"):
            print(f"stopped early: {result.settings['stopped']}")
        print(f"result written to {out} (rebuild: lswag train --from {out}"
              + (" [--pick N for point N of the front])" if plot is not None else ")"))

    @staticmethod
    def print_front(result, truth_file: str | None) -> None:
        """The Pareto front as a table: its index (``--pick``), the arch shortened, fitness, costs, truth."""
        from lswag.settings import COST_UNITS

        metrics = list(result.front[0].get("truth", {})) if result.front else []
        print(f"Pareto front of {result.fitness} against {', '.join(result.minimise)}: {len(result.front)} of "
              f"{result.evaluations} candidates" + (f" (truth from {truth_file})" if metrics else ""))
        header = ["#", "arch", "fitness", *(f"{c} ({COST_UNITS[c]})" for c in result.minimise), *metrics]
        rows = [[str(i), point["arch"] if len(point["arch"]) <= 40 else point["arch"][:37] + "...",
                 f"{point['fitness']:.4g}", *(f"{point[c]:.4g}" for c in result.minimise),
                 *("-" if point["truth"].get(m) is None else f"{point['truth'][m]:.2f}" for m in metrics)]
                for i, point in enumerate(result.front)]
        widths = [max(len(row[j]) for row in [header, *rows]) for j in range(len(header))]
        for row in [header, *rows]:
            print("  " + "  ".join(cell.ljust(width) if j == 1 else cell.rjust(width)
                                   for j, (cell, width) in enumerate(zip(row, widths))))


class Train(Command):
    name, help = "train", "train an architecture (or a search result) with a standard recipe"

    def add_arguments(self, parser):
        add_settings(parser, Scoring, only=("space",))
        parser.add_argument("--arch", help="architecture in any text form of the space")
        parser.add_argument("--from", dest="result", metavar="RESULT.json", help="a result written by lswag search")
        parser.add_argument("--pick", type=_integer(0), metavar="N",
                            help="with --from a search with --minimise: train point N of its Pareto front (0-based, "
                                 "as lswag search numbers them; default: the best by fitness)")
        add_settings(parser, Scoring, only=("build", "data", "image_size"))
        parser.add_argument("--download", action="store_true", help="fetch CIFAR into PATH when it is missing")
        parser.add_argument("--epochs", type=_integer(1), default=10, help="training epochs")
        parser.add_argument("--batch-size", type=_integer(1), default=64, help="images per training step")
        parser.add_argument("--optimizer", choices=("auto", *OPTIMIZERS), default="auto",
                            help="auto: the space's (adamw for the ViT spaces, sgd otherwise)")
        parser.add_argument("--lr", type=float, help="learning rate (default 0.1 sgd, 1e-3 adamw)")
        parser.add_argument("--weight-decay", type=float, help="default 5e-4 sgd, 0.05 adamw")
        parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                            help="random crop and flip (default: on for CIFAR)")
        parser.add_argument("--seed", type=_SEED, default=0, help="seed of the weights and the batch order")
        parser.add_argument("--checkpoint", help="checkpoint file, written every epoch and resumed from")
        parser.add_argument("--device", choices=DEVICES, default="auto", help="where to train: auto, cpu or cuda")

    def run(self, args):
        from lswag.search import load_result
        from lswag.train import train_architecture

        if args.pick is not None and not args.result:
            raise LswagError("--pick needs --from RESULT.json: it picks a point of that search's Pareto front")
        if args.result:
            found = load_result(args.result)
            space_name, arch, build = found["space"], found["arch"], found["build"]
            if args.pick is not None:
                arch = _front_point(found, args.result, args.pick)["arch"]
        elif args.arch:
            space_name, arch, build = args.space, args.arch, parse_build_options(args.build)
        else:
            raise LswagError("lswag train needs --arch (with --space) or --from a search result")
        _outputs(("--checkpoint", args.checkpoint, False))
        trained = train_architecture(space_name, arch, build, data=args.data, image_size=args.image_size,
                                     optimizer=args.optimizer, epochs=args.epochs, batch_size=args.batch_size,
                                     lr=args.lr, weight_decay=args.weight_decay, augment=args.augment, seed=args.seed,
                                     checkpoint=args.checkpoint, download=args.download, device=args.device)
        result, recipe = trained.result, trained.recipe
        resumed = f", resumed after epoch {result.resumed_from}" if result.resumed_from else ""
        epochs = f"{result.epochs} epoch" + ("s" if result.epochs != 1 else "")
        print(f"{space_name} {trained.arch}: test accuracy {result.test_accuracy:.2f}% on {trained.test_images} "
              f"images after {epochs} ({recipe.optimizer}, lr {recipe.lr:g}, batch "
              f"{recipe.batch_size}; {result.seconds:.1f} s{resumed})"
              + (f"; checkpoint {args.checkpoint}" if args.checkpoint else ""))


def _front_point(found: dict[str, Any], path: str, pick: int) -> dict[str, Any]:
    """Point ``pick`` of the Pareto front of the search result ``found`` (read from ``path``); a one-line
    error naming --pick when the result has no front or the front has no such point."""
    front = found.get("front") or []
    if not front:
        raise LswagError(f"--pick {pick}: {path} has no Pareto front (a search without --minimise); train its "
                         "best architecture without --pick")
    if pick >= len(front):
        raise LswagError(f"--pick {pick} is out of range: the Pareto front of {path} has {len(front)} points, "
                         f"0..{len(front) - 1}")
    return front[pick]


class MakeBench(Command):
    name, help = "make-bench", "train NB201 cells on the built-in digits: the embedded mini-benchmark"

    def add_arguments(self, parser):
        parser.add_argument("--out", required=True, help="CSV table to write (resumed when it exists)")
        parser.add_argument("--n", type=_integer(1), default=500, help="number of cells (seeded sample)")
        parser.add_argument("--seed", type=_SEED, default=0, help="seed of the sample")

    def run(self, args):
        from lswag import minibench

        _outputs(("--out", args.out, False))
        command = "lswag make-bench " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["make-bench"] else ""
        path = minibench.make_bench(args.out, n=args.n, seed=args.seed, command=command)
        meta = minibench.load_metadata(path)
        print(f"{path}: {meta['cells']} NB201 cells trained on {meta['data']} ({meta['wall_seconds']:.0f} s in all); "
              f"recipe in {minibench.metadata_path(path)}")


class Demo(Command):
    name, help = "demo", "the whole loop offline on the embedded mini-benchmark: score, correlate, LIBRA, search"

    def add_arguments(self, parser):
        parser.add_argument("--out", default="lswag-demo", help="folder for the store, tables and plots")
        parser.add_argument("--table", help="a table written by lswag make-bench (default: the one shipped with lswag)")
        parser.add_argument("--n", type=_integer(1), help="use a seeded sample of N cells (default: all)")
        parser.add_argument("--calibration", type=_integer(3), default=100, help="cells LIBRA is fitted on")
        parser.add_argument("--population", type=_integer(2), default=20, help="evolution population")
        parser.add_argument("--generations", type=_integer(1), default=5, help="evolution generations")
        parser.add_argument("--workers", type=_integer(1), help="scoring processes (default: 2, or 1 on one core)")
        parser.add_argument("--seed", type=_SEED, default=0, help="seed of the batch, the samples and the searches")
        add_settings(parser, Scoring, only=("device",))
        _format_flag(parser)

    def store_of(self, args):
        from lswag.demo import STORE

        return str(Path(args.out) / STORE)

    def run(self, args):
        from lswag import minibench
        from lswag.demo import run_demo
        from lswag.proxies import Failure

        _outputs(("--out", args.out, True))
        if args.table:
            with about("--table", args.table):
                minibench.load_metadata(args.table)
        report = run_demo(args.out, table=args.table or minibench.TABLE, n=args.n, population=args.population,
                          generations=args.generations, calibration=args.calibration, workers=args.workers,
                          seed=args.seed, device=args.device)
        meta = minibench.load_metadata(report.table)
        evaluation = report.libra
        methods = ("LIBRA", "best single proxy", "rank average (all proxies)")
        if args.format == "json":
            _print_json({"cells": report.cells, "table": str(report.table), "folder": str(report.folder),
                         "seconds": report.seconds, "correlations": [_correlation_json(r) for r in report.correlations],
                         "libra": evaluation.libra.explain(),
                         "methods": {m: asdict(evaluation.result(m)) for m in methods},
                         "searches": [{"strategy": r.strategy, "fitness": r.fitness, "arch": r.arch,
                                       "accuracy": r.truth[meta["metric"]],
                                       "rank": report.ranks[f"{r.strategy} {r.fitness}"]} for r in report.searches]})
            return
        print(f"lswag demo: {report.cells} NB201 cells (C={meta['build']['C']}, N={meta['build']['N']}) trained on "
              f"{meta['data']} {meta['image_size']}x{meta['image_size']} for {meta['recipe']['epochs']} epochs, "
              f"{len(meta['seeds'])} seeds (the embedded mini-benchmark, {report.table.name})")
        print(f"\nSpearman rho and Kendall tau of each proxy with the cells' test accuracy "
              f"(batch 64 of {meta['data']}, seed {args.seed}):")
        print(f"{'proxy':<10} {'spearman':>9} {'95% CI':>16} {'kendall':>8} {'failures':>8} {'s/cell':>7}")
        for r in sorted(report.correlations, key=lambda r: (math.isnan(r.correlation.spearman),
                                                            -r.correlation.spearman)):
            c = r.correlation
            ranks = (f"{c.note:<35}" if math.isnan(c.spearman) else   # the note says why rho is undefined
                     f"{c.spearman:9.3f} [{c.spearman_ci[0]:6.3f},{c.spearman_ci[1]:6.3f}] {c.kendall:8.3f}")
            print(f"{r.proxy:<10} {ranks} {c.failures:8d} {r.mean_seconds:7.3f}")
        failed = [r for r in report.correlations if r.correlation.failures]
        if failed:
            print("failures are ranked last; the store holds each one's reason, e.g. "
                  + "; ".join(f"{r.proxy}: {next(str(s) for s in r.scores if isinstance(s, Failure))}"
                              for r in failed[:2]))
        print(f"\n{evaluation.libra.explain()}")
        for method in methods:
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


COMMANDS: list[Command] = [Score(), Bench(), Layers(), Heatmap(), Libra(), Spaces(), Proxies(), Search(), Train(),
                           MakeBench(), Demo()]
