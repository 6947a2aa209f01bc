"""Two truth-bench records compared site by site: only sites complete in both count."""
import pytest

from benchmarks.truth_paired import compare


def record(best: dict[str, list[tuple[float, float]]], complete: list[str], lookup: dict[str, float]) -> dict:
    per_site = [{"site": s, "methods": {"m": {"candidates": [{"dft_mae": m, "dft_cosine": c, "predicted_mae": 0.3}
                                                        for m, c in cands]},
                                        "lookup": {"candidates": [{"dft_mae": lookup[s], "dft_cosine": 0.95}]}}}
                for s, cands in best.items()]
    return {"methods": {"m": {"complete_sites": complete}, "lookup": {"complete_sites": list(best)}},
            "per_site": per_site}


def test_only_sites_complete_in_both_are_compared():
    look = {"x": 0.20, "y": 0.30, "z": 0.10}
    a = record({"x": [(0.30, 0.8), (0.25, 0.85)], "y": [(0.40, 0.95)], "z": [(0.9, 0.1)]}, ["x", "y", "z"], look)
    b = record({"x": [(0.22, 0.91)], "y": [(0.50, 0.90)], "z": [(0.05, 0.99)]}, ["x", "y"], look)   # z unfinished
    r = compare(a, b, "m")
    assert r["sites"] == 2 and r["site_list"] == ["x", "y"]
    assert r["dft_mae_best_of_3"]["a"] == pytest.approx(0.325) and r["dft_mae_best_of_3"]["b"] == pytest.approx(0.36)
    assert r["b_minus_a"]["mean"] == pytest.approx(0.035) and r["b_minus_a"]["sites_b_better"] == 1
    assert r["share_cosine_0.9"] == {"a": 0.5, "b": 1.0, "lookup": 1.0}
    assert r["b_beats_lookup"] == 0 and r["dft_mae_best_of_3"]["lookup"] == pytest.approx(0.25)
    assert r["checked"]["a"]["candidates"] == 3 and r["checked"]["b"]["optimism"] == pytest.approx(0.36 - 0.30)


def test_no_common_site_says_so():
    a = record({"x": [(0.3, 0.8)]}, ["x"], {"x": 0.2})
    b = record({"y": [(0.3, 0.8)]}, ["y"], {"y": 0.2})
    assert compare(a, b, "m") == {"sites": 0}


def test_a_variant_of_its_own_method_is_compared_with_the_base_method():
    look = {"x": 0.20}
    a = record({"x": [(0.30, 0.8)]}, ["x"], look)
    b = record({"x": [(0.25, 0.9)]}, ["x"], look)
    b["methods"]["v"] = b["methods"].pop("m")
    b["per_site"][0]["methods"]["v"] = b["per_site"][0]["methods"].pop("m")
    assert compare(a, b, "m") == {"sites": 0}                      # B has no method m
    r = compare(a, b, "m", method_b="v")
    assert r["sites"] == 1 and r["method_b"] == "v" and r["b_minus_a"]["mean"] == pytest.approx(-0.05)


def test_top1_compares_the_first_picks_on_sites_where_both_are_checked():
    look = {"x": 0.20, "y": 0.30, "z": 0.10}
    a = record({"x": [(0.30, 0.8), (0.10, 0.95)], "y": [(0.40, 0.95)], "z": [(0.9, 0.1)]}, [], look)   # none complete
    b = record({"x": [(0.22, 0.91)], "y": [(0.50, 0.90)], "z": [(0.05, 0.99)]}, [], look)
    b["per_site"][2]["methods"]["m"]["candidates"][0].pop("dft_mae")        # z: b's first pick unchecked
    assert compare(a, b, "m") == {"sites": 0}
    r = compare(a, b, "m", top1=True)
    assert r["pick"] == "top 1" and r["site_list"] == ["x", "y"]
    assert r["dft_mae_best_of_3"]["a"] == pytest.approx(0.35)              # x's first pick, not its best
    assert r["b_minus_a"]["mean"] == pytest.approx(0.01) and r["share_cosine_0.9"]["b"] == 1.0
