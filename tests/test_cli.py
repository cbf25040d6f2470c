"""Tests of the ``lswag`` command line: exit codes, one-line errors, output formats, and the demo.

Error paths run the real entry point in a subprocess (``python -m lswag.cli`` and, where installed,
the ``lswag`` console script); everything else calls :func:`lswag.cli.main` in-process. torch is
limited to one thread (here and in the subprocesses): on a shared 2-core machine its default
thread pool is up to 50x slower than one thread.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import lswag
from lswag import proxies, spaces
from lswag.cli import main

ARCH_1601 = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|"
# Row 1 of nb201_groundtruth.csv: index 1, its arch string and its NASLib op indices.
ARCH_INDEX1 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
NASLIB_INDEX1 = "(2, 2, 0, 4, 2, 0)"
NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
SOURCE_NAMES = ("digits", "cifar10:PATH", "cifar100:PATH", "npz:PATH", "gaussian")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run_cli(*args: str, exe: list[str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    command = (exe or [sys.executable, "-m", "lswag.cli"]) + list(args)
    return subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=timeout)


def lswag_exe() -> list[str]:
    path = shutil.which("lswag")
    if path is None:
        pytest.skip("the lswag console script is not on PATH")
    return [path]


def assert_one_line_error(proc: subprocess.CompletedProcess) -> str:
    """Exit code 2, exactly one stderr line starting with 'lswag', no traceback anywhere."""
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("lswag"), lines[0]
    assert "error" in lines[0]
    return lines[0]


def run_main(capsys, *argv: str) -> str:
    assert main(list(argv)) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return captured.out


def score_json(capsys, *argv: str) -> dict:
    return json.loads(run_main(capsys, "score", "--format", "json", *argv))


def values(doc: dict) -> dict[str, float | None]:
    return {r["proxy"]: r["value"] for r in doc["results"]}


def model_params_m(arch: str, num_classes: int) -> float:
    model = spaces.get("nb201").build(spaces.get("nb201").parse(arch), num_classes=num_classes, seed=0)
    return sum(p.numel() for p in model.parameters()) / 1e6


# --- error paths: exit code 2, one line on stderr, valid choices named -------------------------

ERROR_CASES = {
    "malformed_arch": (["score", "--arch", "|conv_9x9~0|+|none~0|none~1|+|none~0|none~1|none~2|"],
                       ["conv_9x9", *NB201_OPS]),
    "index_too_big": (["score", "--arch", "15625"], ["15625", "0..15624"]),
    "index_negative": (["score", "--arch", "-1"], ["-1", "0..15624"]),
    "unknown_proxy": (["score", "--arch", "1", "--proxies", "params,nope"], ["'nope'", *proxies.names()]),
    "unknown_space": (["score", "--arch", "1", "--space", "nb999"], ["nb999", "nb201"]),
    "unknown_scheme": (["score", "--arch", "1", "--data", "foo:bar"], ["foo:bar", *SOURCE_NAMES]),
    "missing_npz": (["score", "--arch", "1", "--proxies", "params", "--data", "npz:/no/such.npz"],
                    ["/no/such.npz"]),
    "bad_option_form": (["score", "--arch", "1", "--option", "l_swag.window"], ["l_swag.window", "PROXY.KEY=VALUE"]),
    "unknown_option": (["score", "--arch", "1", "--option", "l_swag.nope=1"],
                       ["'nope'", *proxies.get("l_swag").defaults]),
    "missing_arch": (["score", "--proxies", "params"], ["--arch", "required"]),
    "bad_build_form": (["score", "--arch", "1", "--build", "task"], ["'task'", "KEY=VALUE"]),
    "unknown_build_option": (["score", "--arch", "1", "--proxies", "params", "--build", "task=jigsaw"],
                             ["'task'", "nb201", "C, N"]),
}


@pytest.mark.parametrize("argv, needles", list(ERROR_CASES.values()), ids=list(ERROR_CASES))
def test_error_is_one_line_exit_2(argv, needles):
    line = assert_one_line_error(run_cli(*argv))
    for needle in needles:
        assert needle in line, (needle, line)


def test_missing_cifar_folder_mentions_download(tmp_path):
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    line = assert_one_line_error(run_cli("score", "--arch", "1", "--proxies", "params",
                                         "--data", f"cifar10:{empty}"))
    assert "cifar10" in line and str(empty) in line and "--download" in line


def test_error_through_console_script():
    line = assert_one_line_error(run_cli("score", "--arch", "99999", exe=lswag_exe()))
    assert "99999" in line and "0..15624" in line


def test_bad_window_option_is_a_one_line_error():
    for bad in ("1.5", "12-3", "a-b"):
        line = assert_one_line_error(run_cli("score", "--arch", "1601", "--batch-size", "8",
                                             "--option", f"l_swag.window={bad}"))
        assert "window" in line


def test_single_percentile_window_equals_its_range(capsys):
    single = values(score_json(capsys, "--arch", "1601", "--batch-size", "8", "--option", "l_swag.window=5"))
    ranged = values(score_json(capsys, "--arch", "1601", "--batch-size", "8", "--option", "l_swag.window=5-5"))
    assert single["l_swag"] == ranged["l_swag"]


# --- score ----------------------------------------------------------------------------------------

def test_score_json(capsys):
    doc = score_json(capsys, "--arch", "1601", "--proxies", "l_swag,zico,params", "--batch-size", "8")
    assert doc["arch"] == ARCH_1601
    assert doc["space"] == "nb201" and doc["batch_size"] == 8 and doc["seed"] == 0
    assert [r["proxy"] for r in doc["results"]] == ["l_swag", "zico", "params"]
    for r in doc["results"]:
        assert r["failure"] is None
        assert isinstance(r["value"], float) and math.isfinite(r["value"]), r
        assert isinstance(r["seconds"], float) and r["seconds"] >= 0, r
    params = values(doc)["params"]
    assert params == pytest.approx(model_params_m(ARCH_1601, 10), abs=1e-6)
    assert params == pytest.approx(0.559386, abs=1e-6)   # NB201 benchmark value for this cell
    assert abs(params - 0.5594) < 0.001


def test_space_default_window_is_used_and_user_option_wins(capsys):
    default = score_json(capsys, "--arch", "1601", "--batch-size", "8")
    assert default["options"] == {"l_swag": {"window": list(lswag.spaces.proxy_defaults("nb201")["l_swag"]["window"])}}
    explicit = score_json(capsys, "--arch", "1601", "--batch-size", "8", "--option", "l_swag.window=4-7")
    assert values(explicit)["l_swag"] == values(default)["l_swag"]
    everything = score_json(capsys, "--arch", "1601", "--batch-size", "8", "--option", "l_swag.window=1-10")
    assert everything["options"] == {"l_swag": {"window": "1-10"}}
    assert values(everything)["l_swag"] != values(default)["l_swag"]


def parse_table(out: str) -> tuple[str, dict[str, str]]:
    lines = out.splitlines()
    # header, then one "<proxy> options: ..." line per proxy with options, then the table
    start = next(i for i, line in enumerate(lines) if line.split() == ["proxy", "value", "seconds"])
    assert all(" options: " in line for line in lines[1:start])
    rows = {}
    for line in lines[start + 1:]:
        name, rest = line.split(None, 1)
        value, seconds = rest.rsplit(None, 1)
        assert float(seconds) >= 0
        rows[name] = value.strip()
    assert len(rows) == len(lines) - start - 1, "a proxy appears twice"
    return lines[0], rows


def test_score_table_one_row_per_proxy(capsys):
    header, rows = parse_table(run_main(capsys, "score", "--arch", "1601", "--proxies", "zico,params",
                                        "--batch-size", "8"))
    assert header.startswith(f"nb201 {ARCH_1601}") and "batch 8" in header
    assert list(rows) == ["zico", "params"]
    assert float(rows["params"]) == pytest.approx(0.559386, abs=1e-6)
    assert math.isfinite(float(rows["zico"]))


def test_score_all_proxies(capsys):
    # 13714 has convolutions on every path (1601's cells pass their input through, which AZ-NAS's
    # trainability rightly refuses)
    _, rows = parse_table(run_main(capsys, "score", "--arch", "13714", "--proxies", "all", "--batch-size", "8"))
    assert sorted(rows) == proxies.names()
    for name, text in rows.items():
        assert not text.startswith("failed"), (name, text)
        assert math.isfinite(float(text)), (name, text)


def test_score_deterministic_and_seeded(capsys):
    argv = ("--arch", "1601", "--proxies", "l_swag,zico,params", "--batch-size", "8")
    first, second = score_json(capsys, *argv), score_json(capsys, *argv)
    assert values(first) == values(second)
    other = score_json(capsys, *argv, "--seed", "1")
    assert other["seed"] == 1
    assert values(other)["l_swag"] != values(first)["l_swag"]
    assert values(other)["params"] == values(first)["params"]


def test_arch_forms_are_the_same_cell(capsys):
    docs = [score_json(capsys, "--arch", arch, "--proxies", "l_swag,params", "--batch-size", "8")
            for arch in (ARCH_INDEX1, NASLIB_INDEX1, "1")]
    assert [d["arch"] for d in docs] == [ARCH_INDEX1] * 3
    assert values(docs[0]) == values(docs[1]) == values(docs[2])
    assert values(docs[0])["params"] == pytest.approx(model_params_m(ARCH_INDEX1, 10), abs=1e-6)
    assert values(docs[0])["params"] == pytest.approx(0.802426, abs=1e-6)   # CSV row 1


def test_score_on_npz(capsys, tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "tiny.npz"
    np.savez(path, x=rng.integers(0, 256, size=(12, 32, 32, 3), dtype=np.uint8),
             y=np.arange(12) % 4)
    doc = score_json(capsys, "--arch", "1601", "--proxies", "l_swag,params",
                     "--data", f"npz:{path}", "--batch-size", "8")
    assert doc["data"] == f"npz:{path}"
    assert all(isinstance(v, float) and math.isfinite(v) for v in values(doc).values()), doc
    # the classifier follows the batch's 4 classes (max label + 1)
    assert values(doc)["params"] == pytest.approx(model_params_m(ARCH_1601, 4), abs=1e-6)
    assert values(doc)["params"] < 0.559386


def test_score_image_size_scales_the_inputs(capsys):
    default = score_json(capsys, "--arch", "1601", "--proxies", "flops", "--batch-size", "8")
    small = score_json(capsys, "--arch", "1601", "--proxies", "flops", "--batch-size", "8", "--image-size", "16")
    assert default["image_size"] is None and small["image_size"] == 16
    # convolutions cost per pixel: a quarter of the pixels, about a quarter of the FLOPs
    assert values(small)["flops"] == pytest.approx(values(default)["flops"] / 4, rel=0.05)


def test_score_on_gaussian(capsys):
    doc = score_json(capsys, "--arch", "1601", "--proxies", "l_swag,params", "--data", "gaussian",
                     "--batch-size", "8")
    assert doc["data"] == "gaussian"
    assert all(isinstance(v, float) and math.isfinite(v) for v in values(doc).values()), doc


def test_score_warns_when_a_value_is_pinned_at_its_ceiling(capsys):
    # four Gaussian images: each has its own activation pattern, and all 2^4 patterns show over the units
    argv = ["score", "--arch", "1601", "--data", "gaussian", "--proxies", "te_linear_regions,swap,params"]
    assert main(argv + ["--batch-size", "4", "--format", "json"]) == 0
    captured = capsys.readouterr()
    warning = {r["proxy"]: r["warning"] for r in json.loads(captured.out)["results"]}
    assert warning["te_linear_regions"].startswith("te_linear_regions = 4 is pinned at its ceiling (the batch size")
    assert warning["swap"].startswith("swap = 16 is pinned at its ceiling (2^4")
    assert warning["params"] is None
    assert captured.err.splitlines() == [f"lswag: warning: {warning[p]}" for p in ("te_linear_regions", "swap")]
    # below the ceilings: 16 images show fewer than 2^16 patterns, 3000 crops of the thin copy share regions
    assert main(argv + ["--batch-size", "16", "--option", "te_linear_regions.network=thin"]) == 0
    captured = capsys.readouterr()
    _, rows = parse_table(captured.out)
    assert float(rows["swap"]) < 2 ** 16 and float(rows["te_linear_regions"]) < 3000
    assert captured.err == ""


# --- spaces, proxies, version -------------------------------------------------------------------

def test_spaces(capsys):
    out = run_main(capsys, "spaces")
    sizes = {line.split()[0]: line.split()[1] for line in out.splitlines()}
    assert sizes == {"nb201": "15,625", "nb101": "423,624", "darts": f"{(180 * 8 ** 8) ** 2:,}",
                     "nb301": f"{(180 * 7 ** 8) ** 2:,}", "tnb101_micro": "4,096", "tnb101_macro": "3,256",
                     "autoformer-t": f"{sum(3 * 4 ** d for d in (12, 13, 14)):,}",
                     "autoformer-s": f"{sum(3 * 9 ** d for d in (12, 13, 14)):,}",
                     "autoformer-b": f"{sum(3 * 6 ** d for d in (14, 15, 16)):,}",
                     "vitbench101-autoformer": f"{sum(3 * 4 ** d for d in (12, 13, 14)):,}"}


def test_proxies(capsys):
    out = run_main(capsys, "proxies")
    listed = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert sorted(listed) == proxies.names(timed=True)   # latency too, which 'all' leaves out
    for key, default in proxies.get("l_swag").defaults.items():
        assert f"{key}={default!r}" in listed["l_swag"]
    # each proxy's cost class is that of the most expensive pass it runs
    costs = {"l2_norm": "weights only", "nwot": "forward", "zen": "forward", "l_swag": "forward+backward",
             "synflow": "forward+backward", "tcet": "forward+backward", "grasp": "double backward",
             "te_ntk_cond": "one backward per sample"}
    for name, cost in costs.items():
        assert f"[cost: {cost}; passes: " in listed[name], listed[name]


def test_version():
    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout == f"lswag {lswag.__version__}\n"
    assert lswag.__version__ != "0.0.0+unknown"


def test_version_through_console_script():
    proc = run_cli("--version", exe=lswag_exe())
    assert proc.returncode == 0 and proc.stdout.strip() == f"lswag {lswag.__version__}"


# --- demo -----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_demo_defaults_subprocess(tmp_path):
    """The README's main command, as a user runs it (the whole shipped table; a few minutes)."""
    proc = run_cli("demo", "--out", str(tmp_path / "demo"), timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    out = proc.stdout
    assert "lswag demo: 500 NB201 cells" in out and "LIBRA fitted on" in out
    found = re.findall(r"^  (evolution l_swag|evolution libra|random l_swag)\s+(\d+\.\d\d)%  rank\s+(\d+) of 500", out,
                       flags=re.M)
    assert [f[0] for f in found] == ["evolution l_swag", "evolution libra", "random l_swag"], out
    assert (tmp_path / "demo" / "correlations.csv").exists() and (tmp_path / "demo" / "heatmap.png").exists()


# --- the command line's shape: fast answers, replayable runs, JSON for programs -----------------------------------

QUIET_START = """
import sys
from lswag.cli import main
codes = [main(['--version']), main(['bench', '--help']), main(['bench', '--n', 'x']), main(['nope'])]
heavy = sorted(m for m in ('torch', 'scipy', 'matplotlib', 'numpy') if m in sys.modules)
print(codes, heavy)
"""


def test_help_version_and_argument_errors_answer_without_importing_torch():
    done = subprocess.run([sys.executable, "-c", QUIET_START], capture_output=True, text=True, env=ENV, timeout=60)
    assert done.stdout.strip().splitlines()[-1] == "[0, 0, 2, 2] []", done.stdout + done.stderr


BACKEND = """
import matplotlib
{choose}
import lswag.search, lswag.bench, lswag.layers, lswag.libra, lswag.cli.commands
from lswag.plots import heatmap
before = matplotlib.rcParams._get_backend_or_none()
heatmap({{"nwot": {{"a": 0.5}}}}, {path!r})
print(before, matplotlib.get_backend().lower())
"""


@pytest.mark.parametrize("choose,expected", [("matplotlib.use('svg')", "svg svg"), ("", "None agg")])
def test_importing_lswag_leaves_the_users_matplotlib_backend_alone(tmp_path, choose, expected):
    """A backend the user chose stays; Agg is chosen only when a figure is written and none was chosen."""
    env = {k: v for k, v in ENV.items() if k != "MPLBACKEND"}
    script = BACKEND.format(choose=choose, path=str(tmp_path / "h.png"))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.stdout.strip() == expected, done.stderr
    assert (tmp_path / "h.png").stat().st_size > 0


def test_a_saved_config_replays_the_run(tmp_path, capsys):
    from lswag import minibench

    table = str(minibench.TABLE)
    first = ["bench", "--truth", table, "--metric", "test_acc", "--n", "6", "--proxies", "nwot,params",
             "--build", "C=4", "--build", "N=1", "--image-size", "8", "--batch-size", "8",
             "--store", str(tmp_path / "a.sqlite"), "--format", "json", "--save-config", str(tmp_path / "run.json")]
    assert main(first) == 0
    ran = json.loads(capsys.readouterr().out)
    saved = json.loads((tmp_path / "run.json").read_text())
    assert saved["build"] == ["C=4", "N=1"] and saved["store"] == str(tmp_path / "a.sqlite")
    assert main(["bench", "--config", str(tmp_path / "run.json"), "--store", str(tmp_path / "b.sqlite")]) == 0
    replayed = json.loads(capsys.readouterr().out)      # a fresh store: scored again, as the config says
    assert [(p["proxy"], p["spearman"]) for p in replayed["proxies"]] == \
           [(p["proxy"], p["spearman"]) for p in ran["proxies"]]
    (tmp_path / "bad.json").write_text('{"storre": "x"}')
    done = run_cli("bench", "--config", str(tmp_path / "bad.json"))
    assert done.returncode == 2 and "unknown flags of lswag bench: storre" in done.stderr
    assert done.stderr.count("\n") == 1


@pytest.mark.parametrize("command", [["spaces"], ["proxies"]])
def test_listings_print_json(command, capsys):
    assert main([*command, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    names = spaces.names() if command == ["spaces"] else proxies.names(timed=True)
    assert [row["name"] for row in rows] == names
