"""The retraining bench compares predictors per candidate: a candidate's sites move together, so
they are resampled as one, and the sign says which predictor is closer to DFT."""
import numpy as np

from benchmarks.predictor_check import paired


def test_paired_change_is_per_candidate_and_signed():
    a = [[0.3, 0.3], [0.2], [0.4, 0.4, 0.4]]
    b = [[0.2, 0.2], [0.1], [0.5, 0.5, 0.5]]          # two candidates better, one worse
    r = paired(a, b, n_boot=500)
    assert np.isclose(r["mean_change"], np.mean([-0.1, -0.1, 0.1]))
    assert r["candidates_better"] == 2 and r["candidates"] == 3
    assert r["ci95"][0] <= r["mean_change"] <= r["ci95"][1]


def test_a_candidate_without_predictions_is_left_out():
    r = paired([[0.3], []], [[0.1], [0.2]], n_boot=10)
    assert r["candidates"] == 1 and np.isclose(r["mean_change"], -0.2)


def test_candidates_a_predictor_trained_on_are_not_scored(tmp_path, monkeypatch):
    """Held out means: not in a shard the card names, and not the same structure in another shard."""
    import gzip
    import json

    import benchmarks.predictor_check as pc

    def shard(name, ids):
        with gzip.open(tmp_path / name, "wt") as fh:
            for i in ids:
                fh.write(json.dumps({"material_id": i, "cif": "", "site_dos": [[0.0]]}) + "\n")
    shard("generated-0000.jsonl.gz", ["gen:a", "gen:b"])
    shard("generated-0001.jsonl.gz", ["gen:b", "gen:c"])
    (tmp_path / "generated.pending.jsonl").write_text(json.dumps({"material_id": "gen:d", "site_dos": []})
                                                     + "\n{broken\n")
    monkeypatch.setattr(pc, "LABEL_DIR", tmp_path)
    assert sorted(d["material_id"] for d in pc.generated_lines()) == ["gen:a", "gen:b", "gen:b", "gen:c", "gen:d"]
    assert [d["material_id"] for d in pc.generated_lines(["generated-0000.jsonl.gz"])] == ["gen:c", "gen:d"]
