"""Bad input to every command: one line on stderr naming the flag to change, exit code 2, no
traceback, and nothing written, before any progress bar or file (issue 32). Also what a user meets
around them: a crafted checkpoint that must not run, a foreign SQLite file left untouched, missing
output folders created, Ctrl-C, and the smaller points of a first hour (defaults in --help, notes
instead of nan, honest messages).

The table runs :func:`lswag.cli.main` in-process on tiny settings (it returns the exit code);
only Ctrl-C needs a subprocess.
"""
from __future__ import annotations

import os
import pickle
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lswag import minibench
from lswag.cli import build_parser, main
from lswag.cli.commands import COMMANDS

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MINI = str(minibench.TABLE)                      # 500 NB201 cells, metric test_acc
TINY = ["--build", "C=4", "--build", "N=1", "--batch-size", "8"]
BENCH = ["bench", "--truth", MINI, "--metric", "test_acc", "--n", "4", "--proxies", "params", "--store", "s.sqlite",
         *TINY]
LAYERS = ["layers", "--n", "2", *TINY, "--image-size", "8"]
LIBRA = ["libra", "--scores", MINI, "--metric", "test_acc", "--splits", "2", "--proxies", "params"]
SEARCH = ["search", "--strategy", "random", "--evaluations", "4", "--fitness", "params", "--store", "s.sqlite",
          *TINY, "--image-size", "8"]
TRAIN = ["train", "--arch", "1601", "--epochs", "1", "--build", "C=4", "--build", "N=1", "--image-size", "8"]
BIG = str(10**23)


class RunsCode:
    """Unpickling this runs ``touch MARKER``: what a crafted checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def fx(tmp_path_factory) -> Path:
    """The bad files, in a folder of their own (checked unchanged after every case)."""
    folder = tmp_path_factory.mktemp("fx")
    (folder / "header_only.csv").write_text("arch_str,test_acc\n")
    rows = Path(MINI).read_text().splitlines()
    column = rows[0].split(",").index("test_acc")
    inf = [",".join("inf" if k == column else c for k, c in enumerate(rows[1].split(",")))]
    (folder / "inf.csv").write_text("\n".join([rows[0], *inf, *rows[2:8]]) + "\n")
    (folder / "exists.txt").write_text("keep me\n")
    (folder / "nonutf8.csv").write_bytes(b"benchmark,proxy\n\xff\xfe\xfa,\x81\n")
    header = "benchmark,proxy,n,failures,spearman,spearman_low,spearman_high,kendall,kendall_low,kendall_high,mean_seconds"
    (folder / "nonnumeric.csv").write_text(f"{header}\nb,nwot,10,0,abc,0,0,0,0,0,0\n")
    (folder / "table.xyz").write_text(f"{header}\nb,nwot,10,0,0.5,0,0,0,0,0,0\n")
    (folder / "folder").mkdir()
    rng = np.random.default_rng(0)
    np.savez(folder / "three.npz", x=rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8), y=np.array([0, 1, 2]))
    np.savez(folder / "labels1000.npz", x=rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8),
             y=1000 + np.arange(40) % 10)
    torch.save(RunsCode(folder / "RAN"), folder / "crafted.pt")
    db = sqlite3.connect(folder / "foreign.sqlite")
    db.execute("CREATE TABLE t (a)")
    db.commit()
    db.close()
    return folder


# (case, argv with {fx} for the fixture folder, what the one line must name)
CASES = [
    ("score --image-size 0", ["score", "--arch", "1", "--proxies", "params", "--image-size", "0"], "--image-size"),
    ("score --image-size 1", ["score", "--arch", "1", "--proxies", "params", "--image-size", "1"], "--image-size"),
    ("score --image-size 100000", ["score", "--arch", "1", "--proxies", "params", "--image-size", "100000"],
     "--image-size"),
    ("score --seed 1e23", ["score", "--arch", "1", "--seed", "1e23"], "--seed"),
    ("score --seed 10**23", ["score", "--arch", "1", "--proxies", "params", "--seed", BIG], "--seed"),
    ("score --batch-size 0", ["score", "--arch", "1", "--batch-size", "0"], "--batch-size"),
    ("score --batch-size 1 (2 draws)", ["score", "--arch", "1", "--batch-size", "1"], "--draws"),
    ("score --draws 0 (no proxy draws)", ["score", "--arch", "1", "--proxies", "params", "--draws", "0"], "--draws"),
    ("score --data npz:FOLDER", ["score", "--arch", "1", "--proxies", "params", "--data", "npz:{fx}/folder"],
     "--data"),
    ("score labels 1000..1009", ["score", "--arch", "1", "--proxies", "params", "--data", "npz:{fx}/labels1000.npz",
                                 "--batch-size", "8"], "--data"),
    ("bench --n 0", [*BENCH, "--n", "0"], "--n"),
    ("bench --n -1", [*BENCH, "--n", "-1"], "--n"),
    ("bench header-only truth", [*BENCH, "--truth", "{fx}/header_only.csv"], "--truth"),
    ("bench --out FILE", [*BENCH, "--out", "{fx}/exists.txt"], "--out"),
    ("bench --draws 0", [*BENCH, "--draws", "0"], "--draws"),
    ("bench inf accuracy", [*BENCH, "--truth", "{fx}/inf.csv"], "--truth"),
    ("bench --truth FOLDER", [*BENCH, "--truth", "{fx}/folder"], "--truth"),
    ("bench --data npz:FOLDER", [*BENCH, "--data", "npz:{fx}/folder"], "--data"),
    ("bench --store FOLDER", [*BENCH, "--store", "{fx}/folder"], "--store"),
    ("bench --store foreign SQLite", [*BENCH, "--store", "{fx}/foreign.sqlite"], "--store"),
    ("bench --image-size 0", [*BENCH, "--image-size", "0"], "--image-size"),
    ("bench --workers 0", [*BENCH, "--workers", "0"], "--workers"),
    ("bench --seed 10**23", [*BENCH, "--seed", BIG], "--seed"),
    ("layers --n 0", [*LAYERS, "--n", "0"], "--n"),
    ("layers --out FILE", [*LAYERS, "--out", "{fx}/exists.txt"], "--out"),
    ("layers --image-size 0", [*LAYERS, "--image-size", "0"], "--image-size"),
    ("layers --truth FOLDER", [*LAYERS, "--truth", "{fx}/folder", "--metric", "acc"], "--truth"),
    ("heatmap non-UTF-8 table", ["heatmap", "{fx}/nonutf8.csv", "--out", "h.png"], "nonutf8.csv"),
    ("heatmap non-numeric table", ["heatmap", "{fx}/nonnumeric.csv", "--out", "h.png"], "nonnumeric.csv"),
    ("heatmap .xyz table", ["heatmap", "{fx}/table.xyz", "--out", "h.png"], "table.xyz"),
    ("heatmap --out FOLDER", ["heatmap", MINI, "--out", "{fx}/folder"], "--out"),
    ("libra --out FILE", [*LIBRA, "--out", "{fx}/exists.txt"], "--out"),
    ("libra --n 0", [*LIBRA, "--n", "0"], "--n"),
    ("libra --calibration 0", [*LIBRA, "--calibration", "0"], "--calibration"),
    ("libra --splits 0", [*LIBRA, "--splits", "0"], "--splits"),
    ("spaces --format xml", ["spaces", "--format", "xml"], "--format"),
    ("proxies --format xml", ["proxies", "--format", "xml"], "--format"),
    ("search --out FOLDER", [*SEARCH, "--out", "{fx}/folder"], "--out"),
    ("search --min-params -5", [*SEARCH, "--min-params", "-5"], "--min-params"),
    ("search --parents 10 --population 3", [*SEARCH, "--strategy", "evolution", "--parents", "10", "--population", "3"],
     "--parents"),
    ("search --population 1", [*SEARCH, "--population", "1"], "--population"),
    ("search --evaluations 0", [*SEARCH, "--evaluations", "0"], "--evaluations"),
    ("search --mutation-prob 2", [*SEARCH, "--mutation-prob", "2"], "--mutation-prob"),
    ("search --score-seed 10**23", [*SEARCH, "--score-seed", BIG], "--score-seed"),
    ("search --store FOLDER", [*SEARCH, "--store", "{fx}/folder"], "--store"),
    ("search --truth FOLDER", [*SEARCH, "--truth", "{fx}/folder", "--metric", "acc"], "--truth"),
    ("train crafted checkpoint", [*TRAIN, "--checkpoint", "{fx}/crafted.pt"], "--checkpoint"),
    ("train 3-image npz", [*TRAIN, "--data", "npz:{fx}/three.npz"], "--data"),
    ("train labels 1000..1009", [*TRAIN, "--data", "npz:{fx}/labels1000.npz"], "--data"),
    ("train --epochs 0", [*TRAIN, "--epochs", "0"], "--epochs"),
    ("train --image-size 0", [*TRAIN, "--image-size", "0"], "--image-size"),
    ("train --image-size 100000", [*TRAIN, "--image-size", "100000"], "--image-size"),
    ("train --data npz:FOLDER", [*TRAIN, "--data", "npz:{fx}/folder"], "--data"),
    ("train --seed 10**23", [*TRAIN, "--seed", BIG], "--seed"),
    ("train --checkpoint FOLDER", [*TRAIN, "--checkpoint", "{fx}/folder"], "--checkpoint"),
    ("make-bench --out FOLDER", ["make-bench", "--out", "{fx}/folder", "--n", "1"], "--out"),
    ("make-bench --n 0", ["make-bench", "--out", "mb.csv", "--n", "0"], "--n"),
    ("demo --n 0", ["demo", "--n", "0", "--out", "d"], "--n"),
    ("demo --n 5", ["demo", "--n", "5", "--out", "d"], "--n"),
    ("demo --n 20 (--calibration 100)", ["demo", "--n", "20", "--out", "d"], "--calibration"),
    ("demo --population 1", ["demo", "--population", "1", "--out", "d"], "--population"),
    ("demo --workers 0", ["demo", "--workers", "0", "--out", "d"], "--workers"),
    ("demo --table FOLDER", ["demo", "--table", "{fx}/folder", "--out", "d"], "--table"),
    ("demo --out FILE", ["demo", "--out", "{fx}/exists.txt"], "--out"),
]


def snapshot(*folders: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for folder in folders for p in folder.rglob("*")}


@pytest.mark.parametrize("argv, names", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(argv, names, fx, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    before = snapshot(fx, tmp_path)
    code = main([a.format(fx=fx) for a in argv])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert code == 2, captured.err
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert re.match(r"lswag( [\w-]+)?: error: ", lines[0]) and names in lines[0], lines[0]
    assert snapshot(fx, tmp_path) == before, "a file was created or modified"
    assert not (fx / "RAN").exists(), "the crafted checkpoint ran its code"


def test_every_command_is_in_the_table():
    assert {c.name for c in COMMANDS} <= {argv[0] for _, argv, _ in CASES}


# --- code execution, foreign files, output folders, Ctrl-C ----------------------------------------

@pytest.mark.parametrize("write", [torch.save, lambda obj, path: path.write_bytes(pickle.dumps(obj))],
                         ids=["torch.save", "plain pickle"])
def test_a_crafted_checkpoint_never_runs(write, tmp_path, capsys):
    marker, crafted = tmp_path / "RAN", tmp_path / "crafted.pt"
    write(RunsCode(marker), crafted)
    assert main([*TRAIN, "--checkpoint", str(crafted)]) == 2
    line = capsys.readouterr().err.strip()
    assert not marker.exists()
    assert line == (f"lswag: error: {crafted} is not an lswag checkpoint: it holds Python objects beyond tensors and "
                    "plain data, which lswag never unpickles (they could run code); choose another --checkpoint")


def test_a_checkpoint_holds_only_what_loads_without_unpickling_objects(tmp_path, capsys):
    checkpoint = tmp_path / "run.pt"
    assert main([*TRAIN, "--checkpoint", str(checkpoint)]) == 0
    assert "after 1 epoch (" in capsys.readouterr().out
    state = torch.load(checkpoint, weights_only=True)    # would raise on any pickled object
    assert state["format"] == "lswag-checkpoint" and state["epoch"] == 1
    assert main([*TRAIN, "--epochs", "2", "--checkpoint", str(checkpoint)]) == 2   # another recipe: refused
    assert main([*TRAIN, "--checkpoint", str(checkpoint)]) == 0                     # the same: resumed
    assert "after 1 epoch (" in capsys.readouterr().out


def test_a_foreign_sqlite_file_is_refused_untouched(fx, tmp_path, capsys):
    foreign = fx / "foreign.sqlite"
    content, stamp = foreign.read_bytes(), foreign.stat().st_mtime_ns
    assert main([*BENCH, "--store", str(foreign)]) == 2
    assert "not an lswag store" in capsys.readouterr().err
    assert foreign.read_bytes() == content and foreign.stat().st_mtime_ns == stamp
    assert sorted(p.name for p in fx.glob("foreign.sqlite*")) == ["foreign.sqlite"]   # no -wal, -shm, -journal


def test_missing_folders_of_every_output_are_created(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main([*BENCH, "--store", "runs/nb201.sqlite", "--out", "runs/c10"]) == 0
    assert main(["heatmap", "runs/c10/correlations.csv", "--out", "figs/fig3"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "runs/nb201.sqlite").is_file() and (tmp_path / "runs/c10/heatmap.png").is_file()
    assert out.splitlines()[-1] == "heatmap written to figs/fig3.png" and (tmp_path / "figs/fig3.png").is_file()
    assert main([*SEARCH, "--store", "deep/er/s.sqlite", "--out", "results/found.json"]) == 0
    assert (tmp_path / "deep/er/s.sqlite").is_file() and (tmp_path / "results/found.json").is_file()


def test_ctrl_c_says_what_the_store_keeps(tmp_path):
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) in a bench of about a minute: one
    line, exit 130, no traceback, what was committed kept."""
    store = tmp_path / "s.sqlite"
    command = [sys.executable, "-m", "lswag.cli", "bench", "--truth", MINI, "--metric", "test_acc", "--n", "500",
               "--proxies", "l_swag,zico", "--build", "C=8", "--build", "N=1", "--store", str(store)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    # a shell's background job ignores SIGINT and its children inherit that: restore the default first
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if store.is_file():
            with sqlite3.connect(store) as db:
                if db.execute("SELECT name FROM sqlite_master WHERE name='results'").fetchone() and \
                        db.execute("SELECT COUNT(*) FROM results").fetchone()[0] >= 4:
                    break
        time.sleep(0.2)
    assert process.poll() is None, "the bench ended before it could be interrupted"
    os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=60)
    with sqlite3.connect(store) as db:
        kept = db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    assert "Traceback" not in out + err
    assert process.returncode == 130, err
    assert err.splitlines()[-1] == f"interrupted: {kept} results kept in {store}"
    assert 4 <= kept < 1000


# --- the smaller points of a first hour -----------------------------------------------------------

def test_help_shows_every_default():
    parser = build_parser()
    for command in COMMANDS:
        sub = parser._subparsers._group_actions[0].choices[command.name]
        text = "".join(sub.format_help().split())   # wrapping may break a line anywhere, even at a hyphen
        for action in sub._actions:
            if action.option_strings and action.default not in (None, False, [], "", "==SUPPRESS=="):
                shown = sub._get_formatter()._expand_help(action)
                assert "default" in shown and "".join(shown.split()) in text, (command.name, action.option_strings)


def test_help_of_data_states_the_cifar_pickle_risk(capsys):
    assert main(["score", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "CIFAR's python batches are pickles" in text and "give only CIFAR files you trust" in text


def test_a_constant_truth_gets_a_note_not_nan(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rows = Path(MINI).read_text().splitlines()
    column = rows[0].split(",").index("test_acc")
    constant = [",".join("90.0" if k == column else c for k, c in enumerate(r.split(","))) for r in rows[1:9]]
    Path("constant.csv").write_text("\n".join([rows[0], *constant]) + "\n")
    assert main([*BENCH, "--truth", "constant.csv"]) == 0
    bench = capsys.readouterr().out
    assert "target constant: 90 for all 4" in bench and "nan" not in bench
    assert main([*LAYERS, "--n", "3", "--truth", "constant.csv", "--metric", "test_acc"]) == 0
    layers = capsys.readouterr().out
    assert "ground truth constant: 90 for all 3" in layers and "nan" not in layers


def test_a_resumed_search_says_its_scores_came_from_the_store(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(SEARCH) == 0
    assert " s in this run, " in capsys.readouterr().out
    assert main(SEARCH) == 0
    assert "every score read from the store" in capsys.readouterr().out


def test_pruning_a_large_supernet_warns_before_it_starts(tmp_path, monkeypatch, capsys):
    """DARTS' default supernet (C=36, 20 cells, 20 M parameters): warned of, then stopped by Ctrl-C at
    its first round, which also ends in one line naming what the store keeps."""
    from lswag.search.strategies import Prune

    def interrupt(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(Prune, "ask", interrupt)
    store = tmp_path / "s.sqlite"
    code = main(["search", "--space", "darts", "--strategy", "prune", "--fitness", "params", "--store", str(store),
                 "--batch-size", "8", "--image-size", "8"])
    err = capsys.readouterr().err.splitlines()
    assert code == 130
    assert err[0].startswith("lswag: warning: pruning scores up to ") and "20.2 M parameters" in err[0]
    assert "--build" in err[0]
    assert err[-1] == f"interrupted: 0 results kept in {store}"


def test_figures_label_ranks_and_keep_long_labels(tmp_path, monkeypatch):
    import matplotlib.image

    from lswag import plots

    path = plots.heatmap({"nwot": {"digits mini-benchmark of a long name": 0.5}}, tmp_path / "one")
    assert path == tmp_path / "one.png"
    width = matplotlib.image.imread(path).shape[1]
    assert width > (1.2 + 1.1) * 120, "the image grows to hold the rotated label"
    made = []
    subplots = plots.subplots
    monkeypatch.setattr(plots, "subplots", lambda **kwargs: made.append(subplots(**kwargs)) or made[-1])
    plots.rank_scatter("nwot", [3.0, 1.0, 2.0], [90.0, 80.0, 85.0], tmp_path / "ranks.png")
    axes = made[0][1]
    assert axes.get_xlabel() == "true rank (1 = most accurate)"
    assert axes.get_ylabel() == "rank by nwot (1 = highest score)"
    assert list(axes.collections[0].get_offsets()[:, 0]) == [1.0, 3.0, 2.0]   # 90% is rank 1


def test_a_widened_libra_tolerance_says_so():
    from lswag.libra import _threshold

    assert _threshold(0.8, 0.1, 0.1) == "rho >= 0.700 (tolerance 0.1)"
    assert _threshold(0.8, 0.2, 0.1) == "rho >= 0.600 (tolerance 0.2, widened from 0.1: no proxy within it)"


def test_settings_name_their_flags_from_python_too():
    from lswag.settings import Budget, Scoring, SearchConfig, SettingError

    with pytest.raises(SettingError, match=r"^--draws must be an integer in 1\.\.4 "):
        Scoring("nb201", batch_size=4, gradient_draws=5)
    with pytest.raises(SettingError, match=r"^--min-params must be a finite number >= 0"):
        Budget(min_params=-5)
    with pytest.raises(SettingError, match=r"^--parents must be an integer in 1\.\.3 "):
        SearchConfig(Scoring("nb201"), population=3, parents=10)
