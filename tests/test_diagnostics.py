"""diagnostics.prefix_share / id_signal: how much sequential signal a set of semantic IDs carries."""
from pathlib import Path

import numpy as np
import pytest

from diger_lib import data as D
from diger_lib.diagnostics import id_signal, prefix_share


def _samples(history, target):
    h = np.full((len(history), 3), -1)
    for r, row in enumerate(history):
        h[r, : len(row)] = row
    return D.Samples(np.arange(len(target)), h, np.array([len(r) for r in history]), np.array(target))


def test_prefix_share_counts_targets_under_a_prefix_the_history_holds():
    codes = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    s = _samples([[0], [0, 2], [3], [1, 3]], [1, 3, 2, 1])
    # level 1: target 1 (prefix 0) after item 0 -> hit; 3 (prefix 1) after 2 -> hit; 2 after 3 -> hit;
    # target 1 after [1, 3]: the item itself (a repeat visit) -> hit
    assert prefix_share(s, codes, 1) == 1.0
    assert prefix_share(s, codes, 2) == 0.25  # only the repeat visit shares both codes
    assert prefix_share(_samples([[2]], [0]), codes, 1) == 0.0  # padding (-1) never matches


def test_prefix_share_rejects_a_level_the_codes_do_not_have():
    with pytest.raises(ValueError, match="level=3"):
        prefix_share(_samples([[0]], [1]), np.zeros((2, 2), dtype=int), 3)


def test_id_signal_adds_a_permuted_control():
    sp = D.split_leave_one_out(D.load_interactions(Path(__file__).parent / "fixtures", "Tiny"), 20)
    codes = np.random.default_rng(1).integers(0, 4, size=(sp.n_items, 2))
    rows = id_signal(sp.test, {"ours": codes})
    assert [r["ids"] for r in rows] == ["ours", "ours, items permuted"]
    assert rows[0]["level 1"] == prefix_share(sp.test, codes, 1) and 0 <= rows[1]["level 2"] <= 1


def test_id_signal_command_prints_a_table_and_names_a_bad_codes_file(tmp_path, capsys):
    from diger_lib.cli import main

    fixtures = Path(__file__).parent / "fixtures"
    n_items = D.split_leave_one_out(D.load_interactions(fixtures, "Tiny"), 20).n_items
    good, bad = tmp_path / "prof" / "Tiny" / "tok" / "codes.npy", tmp_path / "bad.npy"
    good.parent.mkdir(parents=True)
    np.save(good, np.random.default_rng(0).integers(0, 4, size=(n_items, 3)))
    np.save(bad, np.zeros((n_items + 1, 3), dtype=int))
    assert main(["id-signal", "Tiny", "--data-root", str(fixtures), "--codes", str(good), "--codes", str(good)]) == 0
    out = capsys.readouterr().out
    assert "| ours: prof/Tiny/tok | " in out and "| ours: prof/Tiny/tok, items permuted |" in out and "level 3" in out
    assert "| ours: prof/Tiny/tok (2) | " in out  # a second file under the same name keeps its own row
    assert main(["id-signal", "Tiny", "--data-root", str(fixtures), "--codes", str(bad)]) == 1
    assert f"expected [{n_items} items, levels]" in capsys.readouterr().err
