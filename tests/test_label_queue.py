"""The labeller's queue: `dosmatgen label --first FILE` puts the named structures first, in the
order given, on real rows of the shared MP table (the GPAW run itself is tested in
test_labelling.py; here it is replaced by a recorder of the queue it is handed)."""
from __future__ import annotations

import csv
import gzip

import pytest

from dosmatgen_core import cli
from dosmatgen_core.labels import labeller
from dosmatgen_core.labels.labeller import put_first, select_tasks
from dosmatgen_core.paths import MP_CSVS

pytestmark = pytest.mark.skipif(not MP_CSVS[0].exists(), reason="needs the shared MP table")


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory):
    """Six calculable rows of mp20 with at most 4 sites, as a table of their own."""
    path = tmp_path_factory.mktemp("mp") / "six.csv.gz"
    ok = labeller.supported_elements()
    with gzip.open(MP_CSVS[0], "rt", newline="") as fh:
        reader = csv.DictReader(fh)
        rows = [r for r in reader if int(r["nsites"]) <= 4 and set(r["elements"].strip("[]").replace("'", "").replace(" ", "").split(",")) <= ok]
        rows = rows[:6]
        fields = reader.fieldnames
    with gzip.open(path, "wt", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    return path


def test_put_first_keeps_the_given_order_and_names_the_absent():
    tasks = [{"material_id": m} for m in ("a", "b", "c", "d")]
    out, absent = put_first(tasks, ["c", "x", "a", "c"])
    assert [t["material_id"] for t in out] == ["c", "a", "b", "d"]
    assert absent == ["x"]
    assert put_first(tasks, [])[0] == tasks


def test_label_first_queues_the_named_structures_first(small_csv, tmp_path, monkeypatch, capsys):
    usual = [t["material_id"] for t in select_tasks([small_csv])]
    assert len(usual) == 6
    wanted = [usual[-1], usual[2], "mp-nowhere"]
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(wanted) + "\n")
    queued = []

    def record(tasks, out, **kw):
        queued.extend(t["material_id"] for t in tasks)
        return labeller.RunStats()
    monkeypatch.setattr(labeller, "run_labelling", record)
    rc = cli.main(["label", "--csv", str(small_csv), "--out", str(tmp_path / "labels"), "--first", str(ids)])
    assert rc == 0
    assert queued == [usual[-1], usual[2]] + [m for m in usual if m not in wanted]
    out = capsys.readouterr().out
    assert "2 of 3 ids" in out and "mp-nowhere" in out


@pytest.mark.parametrize("argv, words", [
    (["--first", "{tmp}/missing.txt"], "not found"),
    (["--first", "{tmp}/ids.txt", "--cif", "{tmp}/x.cif"], "--first orders"),
])
def test_label_first_refuses_in_one_line(argv, words, tmp_path, monkeypatch, capsys):
    (tmp_path / "ids.txt").write_text("mp-1\n")
    monkeypatch.setattr(labeller, "run_labelling", lambda *a, **k: pytest.fail("labelling started"))
    rc = cli.main(["label", "--out", str(tmp_path / "labels"), *[a.format(tmp=tmp_path) for a in argv]])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc == 2 and len(err) == 1 and words in err[0], err
