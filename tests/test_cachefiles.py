"""The parsed MP tables and the site index kept on disk: reused across copies of the same files,
replaced (not piled up) when their source changes."""
import csv
import gzip
import os

import numpy as np

from dosmatgen_core import cachefiles
from dosmatgen_core.candidates import pipeline
from dosmatgen_core.paths import DB_URL, MP_CSVS
from dosmatgen_core.scoring import search
from dosmatgen_core.structures import iter_mp_csv
from dosmatgen_core.training import dataset


def small_table(path, rows: int, skip: int = 0):
    """The first rows of the shared mp20 table, as the same gzipped CSV."""
    src = [r for _, r in zip(range(rows + skip), iter_mp_csv(MP_CSVS[0]))][skip:]
    with gzip.open(path, "wt", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(src[0]))
        w.writeheader()
        w.writerows(src)
    return path


def test_the_parsed_tables_survive_a_copy_and_are_replaced_when_their_contents_change(tmp_path, monkeypatch):
    table, cache = small_table(tmp_path / "structures.csv.gz", 6), tmp_path / "cache"
    legacy = cache / "mp-0123456789abcdef.npz"       # a file from before sources were named
    cache.mkdir()
    legacy.write_bytes(b"old")
    first = dataset.load_unlabelled([table], cache_dir=cache)
    assert len(first) == 6 and not legacy.exists()
    (kept,) = cache.glob("mp-*.npz")
    # a fresh mount: the same bytes with a new date read the kept copy, nothing is parsed
    os.utime(table, (1, 1))

    def no_parse(*a, **k):
        raise AssertionError("parsed again")
    monkeypatch.setattr("dosmatgen_core.structures.read_structure", no_parse)
    again = dataset.load_unlabelled([table], cache_dir=cache)
    assert [e.material_id for e in again] == [e.material_id for e in first]
    assert np.array_equal(np.concatenate([e.frac for e in again]), np.concatenate([e.frac for e in first]))
    monkeypatch.undo()
    # other contents: parsed anew, and the old copy goes
    small_table(table, 5, skip=1)
    changed = dataset.load_unlabelled([table], cache_dir=cache)
    assert [e.material_id for e in changed] != [e.material_id for e in first] and len(changed) == 5
    (now,) = cache.glob("mp-*.npz")
    assert now != kept
    # another table's copy is its own
    other = dataset.load_unlabelled([small_table(tmp_path / "other.csv.gz", 3)], cache_dir=cache)
    assert len(other) == 3 and len(list(cache.glob("mp-*.npz"))) == 2


def test_a_rebuilt_databases_index_replaces_its_old_one(tmp_path):
    db = tmp_path / "reference.db"
    db.write_bytes(b"a database")
    first = search.index_path(str(db), tmp_path)
    assert cachefiles.save_npz(first, curves=np.zeros((2, 3)))
    os.utime(db, (1, 1))          # as build-db leaves it: another date, another version
    second = search.index_path(str(db), tmp_path)
    assert second != first and cachefiles.save_npz(second, curves=np.ones((2, 3)))
    assert list(tmp_path.glob("site-index-*.npz")) == [second]
    # another database's index stays
    other = search.index_path(DB_URL, tmp_path)
    assert cachefiles.save_npz(other, curves=np.ones((1, 3)))
    assert sorted(tmp_path.glob("site-index-*.npz")) == sorted([second, other])


def test_a_cache_name_without_a_source_is_left_alone(tmp_path):
    (tmp_path / "train-pack.npz").write_bytes(b"x")
    path = cachefiles.cache_path(tmp_path, "mp", "0" * 8, "1" * 16)
    assert cachefiles.save_npz(path, a=np.arange(3))
    assert (tmp_path / "train-pack.npz").exists() and np.load(path)["a"].tolist() == [0, 1, 2]


def test_a_cache_that_cannot_be_written_costs_a_rebuild_not_an_error(tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder should be")
    assert not cachefiles.save_npz(cachefiles.cache_path(blocked, "mp", "0" * 8, "1" * 16), a=np.arange(3))
    assert blocked.read_text().startswith("a file")


def test_the_first_run_counts_the_parse_only_where_no_process_kept_it(monkeypatch):
    from dosmatgen_core.scoring import evaluate
    monkeypatch.setattr(evaluate, "known_tables_loaded", lambda: False)
    monkeypatch.setattr(pipeline, "mp_tables_parsed", lambda: False)
    monkeypatch.setattr(pipeline, "mp_structures_loaded", lambda: False)
    assert pipeline.cold_parts(relaxed=False) == ["MP structures parsed", "novelty tables"]
    # parsed in memory where the cache folder could not keep it: no parse left (the review)
    monkeypatch.setattr(pipeline, "mp_structures_loaded", lambda: True)
    assert pipeline.cold_parts(relaxed=False) == ["novelty tables"]
    monkeypatch.setattr(pipeline, "mp_structures_loaded", lambda: False)
    assert pipeline.cold_parts(relaxed=False, check_novelty=False) == []
    monkeypatch.setattr(pipeline, "mp_tables_parsed", lambda: True)
    assert pipeline.cold_parts(relaxed=False) == ["novelty tables"]
    monkeypatch.setattr(evaluate, "known_tables_loaded", lambda: True)
    monkeypatch.setattr(pipeline, "mp_tables_parsed", lambda: False)
    assert pipeline.cold_parts(relaxed=False) == []


def test_two_threads_build_the_mp_structures_once(monkeypatch):
    """The app's warm-up thread and a run's first novelty check: the second waits for the first's
    build instead of parsing the tables again beside it."""
    import threading
    import time
    calls = []

    def slow(paths, cache_dir=None):
        calls.append(1)
        time.sleep(0.3)
        return []
    monkeypatch.setattr(dataset, "load_unlabelled", slow)
    dataset._mp_structures.cache_clear()
    try:
        threads = [threading.Thread(target=dataset.mp_structures) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert calls == [1]
    finally:
        dataset._mp_structures.cache_clear()      # the next caller reads the real tables


def test_the_app_parses_the_tables_in_the_background_only_where_none_are_kept(monkeypatch):
    from studio import state
    asked = []
    monkeypatch.setattr(pipeline, "warm_up", lambda part: asked.append(part))
    monkeypatch.setattr(state, "mp_tables_parsed", lambda: True)
    state.warm_start.clear()
    assert state.warm_start() is None and asked == []
    monkeypatch.setattr(state, "mp_tables_parsed", lambda: False)
    state.warm_start.clear()
    w = state.warm_start()
    w.thread.join(5)
    assert asked == ["MP structures parsed"] and w.running_s() is None
    state.warm_start.clear()


def test_an_unreadable_cache_file_is_parsed_again_and_replaced(tmp_path):
    table, cache = small_table(tmp_path / "structures.csv.gz", 4), tmp_path / "cache"
    kept = dataset.mp_cache_path([table], cache)
    cache.mkdir()
    kept.write_bytes(b"PK\x03\x04 cut short")            # a zip's start, then nothing
    assert len(dataset.load_unlabelled([table], cache_dir=cache)) == 4
    assert cachefiles.load_npz(kept, ("ids",))["ids"].shape == (4,)
    assert not list(cache.glob(".*tmp.npz"))             # no writer's temporary file left behind
    assert kept.stat().st_mode & 0o044 == 0o044            # readable by the install's other users


def test_the_same_tables_mounted_elsewhere_are_the_same_source(tmp_path):
    a, b = tmp_path / "a" / "mp20", tmp_path / "b" / "mp20"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    small_table(a / "structures.csv.gz", 3)
    (b / "structures.csv.gz").write_bytes((a / "structures.csv.gz").read_bytes())
    assert dataset.mp_cache_path([a / "structures.csv.gz"], tmp_path) == dataset.mp_cache_path([b / "structures.csv.gz"], tmp_path)
