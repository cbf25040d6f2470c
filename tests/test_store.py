"""The result store: schema upgrades, what it refuses untouched, its read methods, and libra reading it."""
import csv
import json
import math
import shutil
import sqlite3
from pathlib import Path

import pytest

from lswag import spaces
from lswag import store as store_module
from lswag.errors import LswagError
from lswag.libra import read_scores
from lswag.proxies import Failure
from lswag.store import SCHEMA, Store, canonical, settings_id

PRE_REDESIGN = Path(__file__).parent / "fixtures" / "pre_redesign" / "store.sqlite"

#: the results table and meta of a schema-1 store, as lswag 0.2.0 created them
SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE results (space TEXT NOT NULL, arch TEXT NOT NULL, proxy TEXT NOT NULL, settings_id TEXT NOT NULL,
    settings TEXT NOT NULL, value REAL, failure TEXT, seconds REAL NOT NULL, peak_memory_mb REAL,
    created REAL NOT NULL, PRIMARY KEY (space, arch, proxy, settings_id));
INSERT INTO meta VALUES ('format', 'lswag-store'), ('schema', '1'), ('space', 'nb201');
"""
COMMON = {"data": "digits", "batch_size": 64, "seed": 0, "image_size": 8, "gradient_draws": 2, "init": "given"}


def rows(path):
    with sqlite3.connect(path) as db:
        return db.execute("SELECT * FROM results ORDER BY arch, proxy, settings_id").fetchall()


def pragma(path, name):
    with sqlite3.connect(path) as db:
        return db.execute(f"PRAGMA {name}").fetchone()[0]


def schema_1_store(path, rows_to_add):
    """A store as lswag 0.2.0 wrote it, holding ``(arch, proxy, settings, value)`` rows."""
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA_1)
        db.executemany("INSERT INTO results VALUES ('nb201', ?, ?, ?, ?, ?, NULL, 0.1, NULL, 0)",
                       [(arch, proxy, settings_id(s), canonical(s), value) for arch, proxy, s, value in rows_to_add])


def test_a_pre_redesign_store_is_upgraded_in_place_and_keeps_every_row(tmp_path):
    path = tmp_path / "store.sqlite"
    shutil.copyfile(PRE_REDESIGN, path)
    before = rows(path)
    with Store(path, "nb201") as store:
        assert store.upgrade_note == f"upgraded store {path} from schema 1 to {SCHEMA}"
        assert store.count() == len(before) == 82 and store.unreachable() == 0
        # the key the engine writes for nwot on that run: the run's settings, the options, the implementation
        key = {**COMMON, "build": {"C": 8, "N": 1}, "memory_format": "channels_last", "options": {},
               "implementation": 1}
        assert len(store.results("nwot", key)) == 20
        failed = [r for r in store.results("nwot", key).values() if isinstance(r.value, Failure)]
        assert failed and all("NWOT kernel is singular" in r.value.reason for r in failed)
        assert store.settings_in_use()["l_swag"] == [{**key, "options": {"window": [4, 7]}}]
    after = rows(path)
    assert [r[:3] + r[5:] for r in after] == [r[:3] + r[5:] for r in before]   # only the keys changed
    for row in after:
        settings = json.loads(row[4])
        assert "lswag" not in settings and settings["implementation"] == 1 and row[3] == settings_id(settings)
    assert pragma(path, "user_version") == SCHEMA
    with Store(path, "nb201") as again:   # a second open is a no-op
        assert again.upgrade_note is None
    assert rows(path) == after


def test_rows_of_other_versions_stay_unreachable_and_an_upgrade_is_one_transaction(tmp_path, monkeypatch):
    path = tmp_path / "old.sqlite"
    released, unknown, other_release = ({**COMMON, "options": {}, "lswag": version}
                                        for version in ("0.2.0", "0.0.0+unknown", "0.2.1"))
    schema_1_store(path, [("a", "nwot", released, 1.0), ("a", "nwot", unknown, 2.0),
                          ("a", "nwot", other_release, 3.0),   # same arch and key as 0.2.0's once upgraded
                          ("b", "nwot", unknown, 4.0)])
    before = rows(path)

    real_upgrade = store_module.UPGRADES[0]

    def upgrade_then_fail(db):
        real_upgrade(db)
        raise RuntimeError("interrupted")

    with monkeypatch.context() as patch:
        patch.setattr(store_module, "UPGRADES", (upgrade_then_fail,))
        with pytest.raises(RuntimeError, match="interrupted"):
            Store(path, "nb201")
    assert rows(path) == before and pragma(path, "user_version") == 0   # rolled back whole
    with Store(path, "nb201") as store:
        assert store.count() == 4 and store.unreachable() == 3
        assert store.upgrade_note.endswith("3 results of an lswag other than 0.2.x (proxy implementations "
                                           "unknown) are kept but will not be reused")
        current = {**COMMON, "options": {}, "implementation": 1}
        assert {a: r.value for a, r in store.results("nwot", current).items()} == {"a": 1.0}
        assert store.results("nwot", unknown)["b"].value == 4.0   # readable under its old key
    kept = {json.loads(r[4]).get("lswag") for r in rows(path)}
    assert kept == {None, "0.0.0+unknown", "0.2.1"}


def test_a_store_of_a_newer_lswag_is_refused(tmp_path):
    path = tmp_path / "new.sqlite"
    Store(path, "nb201").close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA + 1}")
    with pytest.raises(LswagError) as error:
        Store(path, "nb201")
    assert str(error.value) == f"store {path} was written by a newer lswag (schema {SCHEMA + 1}); upgrade lswag"


def test_a_foreign_sqlite_file_is_refused_as_it_was_found(tmp_path):
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE meta (key TEXT, value TEXT)")
        db.execute("INSERT INTO meta VALUES ('format', 'something else')")
    content = path.read_bytes()
    for space in ("nb201", None):
        with pytest.raises(LswagError, match="is an SQLite file but not an lswag store; choose another --store"):
            Store(path, space)
    assert path.read_bytes() == content and pragma(path, "journal_mode") == "delete"
    text = tmp_path / "notes.sqlite"
    text.write_text("not a database, just some text long enough to fill a page header" * 20)
    with pytest.raises(LswagError, match="notes.sqlite is not an lswag store"):
        Store(text, "nb201")
    assert text.read_text() == "not a database, just some text long enough to fill a page header" * 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.sqlite", "other.sqlite"]   # no -wal, no -shm


def test_read_methods_and_opening_a_store_of_any_space(tmp_path):
    path = tmp_path / "s.sqlite"
    with Store(path, "nb201") as store:
        store.add("a", [("nwot", {"s": 1}, 1.5, 0.2), ("snip", {"s": 1}, Failure("no gradient"), 0.1)])
        store.add("b", [("nwot", {"s": 2}, 2.5, 0.2)])
    assert pragma(path, "journal_mode") == "wal" and pragma(path, "user_version") == SCHEMA
    with Store(path) as store:   # a reader: the store of whichever space it holds
        assert store.space == "nb201" and store.upgrade_note is None
        assert store.settings_in_use() == {"nwot": [{"s": 1}, {"s": 2}], "snip": [{"s": 1}]}
        assert store.results("snip", {"s": 1})["a"].value == Failure("no gradient")
        assert store.results("nwot", {"s": 2})["b"].value == 2.5 and store.unreachable() == 0
    with pytest.raises(LswagError, match="not found"):
        Store(tmp_path / "missing.sqlite")
    (tmp_path / "empty.sqlite").touch()
    with pytest.raises(LswagError, match="holds no lswag store"):
        Store(tmp_path / "empty.sqlite")
    assert (tmp_path / "empty.sqlite").stat().st_size == 0


def test_read_scores_keeps_the_reasons_of_failures(tmp_path):
    space = spaces.get("nb201")
    archs = [space.format(space.parse(str(i))) for i in (0, 5, 77, 1601)]
    with Store(tmp_path / "runs.sqlite", "nb201") as store:
        for i, arch in enumerate(archs):
            nwot = Failure("the NWOT kernel is singular") if i == 1 else float(i)
            store.add(arch, [("nwot", {"s": 1}, nwot, 0.1), ("snip", {"s": 1}, float(-i), 0.1)])
    with open(tmp_path / "truth.csv", "w", newline="") as f:
        csv.writer(f).writerows([["arch_str", "acc"], *([a, 10.0 + i] for i, a in enumerate(archs))])
    table = read_scores(tmp_path / "runs.sqlite", truth=tmp_path / "truth.csv", metric="acc")
    assert math.isnan(table.columns["nwot"][1]) and table.columns["nwot"][2] == 2.0
    assert table.failures == {"nwot": {table.archs[1]: "the NWOT kernel is singular"}}
    assert table.rows([1, 2]).failures == table.failures and table.rows([0, 2, 3]).failures == {}


def test_libra_prints_the_failures_a_store_holds(tmp_path, capsys):
    from lswag.cli import main

    space = spaces.get("nb201")
    archs = [space.format(c) for c in space.sample(12, seed=3)]
    with Store(tmp_path / "runs.sqlite", "nb201") as store:
        for i, arch in enumerate(archs):
            nwot = Failure("the NWOT kernel is singular") if i == 4 else float(i % 5)
            store.add(arch, [("nwot", {"s": 1}, nwot, 0.1), ("snip", {"s": 1}, float(-i), 0.1),
                             ("params", {"s": 1}, float(i), 0.1)])
    with open(tmp_path / "truth.csv", "w", newline="") as f:
        csv.writer(f).writerows([["arch_str", "acc"], *([a, 10.0 + i] for i, a in enumerate(archs))])
    assert main(["libra", "--scores", str(tmp_path / "runs.sqlite"), "--truth", str(tmp_path / "truth.csv"),
                 "--metric", "acc", "--calibration", "6", "--splits", "2"]) == 0
    assert "nwot failed on 1 of 12 archs (ranked last), e.g.: the NWOT kernel is singular" in capsys.readouterr().out


def test_results_of_some_architectures_read_only_those(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "LOOKUP_CHUNK", 3)        # several chunks for a few archs
    with Store(tmp_path / "s.sqlite", "nb201") as store:
        for i in range(10):
            store.add(f"a{i}", [("nwot", {"s": 1}, float(i), 0.1), ("zico", {"s": 1}, Failure("x"), 0.1)])
        wanted = ["a9", "a2", "missing", "a2", "a5", "a0", "a7"]
        some = store.results("nwot", {"s": 1}, wanted)
        assert {arch: r.value for arch, r in some.items()} == {"a9": 9.0, "a2": 2.0, "a5": 5.0, "a0": 0.0, "a7": 7.0}
        assert store.results("zico", {"s": 1}, ["a3"])["a3"].value == Failure("x")
        assert store.results("nwot", {"s": 2}, wanted) == {} and store.results("nwot", {"s": 1}, []) == {}
        assert len(store.results("nwot", {"s": 1})) == 10
