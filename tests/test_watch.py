"""`cli progress`: the last line each running step printed, read from the notebook papermill saves as it runs."""
import json
import os

import pytest

from diger_lib import cli
from diger_lib import watch as W


def _book(*texts, error=None):
    outputs = [{"output_type": "stream", "name": "stderr", "text": t} for t in texts]
    if error:
        outputs.append({"output_type": "error", "ename": error, "evalue": "loss is NaN", "traceback": []})
    return {"cells": [{"cell_type": "code", "outputs": [{"output_type": "stream", "text": ["setup done\n"]}]},
                      {"cell_type": "code", "outputs": outputs}, {"cell_type": "code", "outputs": []}]}


def test_last_line_is_the_latest_progress_state():
    bar = "epoch 1:   4%| 22/514 [01:00<22:41]\repoch 1:  18%| 92/514 [04:06<19:55, loss=5.449]\n"
    assert W.last_line(_book(bar)) == "epoch 1:  18%| 92/514 [04:06<19:55, loss=5.449]"
    assert W.last_line(_book(["recommend:  0%\n", "recommend: 60%\n", "\n"])) == "recommend: 60%"
    assert W.last_line(_book()) == "setup done"  # the cell running now has printed nothing yet
    assert W.last_line({"cells": []}) == "(no output yet)"
    assert W.last_line(_book("epoch 2\n", error="FloatingPointError")) == "error: FloatingPointError: loss is NaN"


def test_running_steps_of_a_profile(tmp_path, capsys):
    prof = tmp_path / "paper_cpu"
    (prof / "04_train_recommender__done").mkdir(parents=True)  # finished: not running
    a = prof / ".04_train_recommender__a.partial"
    a.mkdir()
    (a / "04_train_recommender.ipynb").write_text(json.dumps(_book("epoch 3:  41%| loss=2.9\n")))
    os.utime(a / "04_train_recommender.ipynb", (100.0, 100.0))
    b = prof / ".04_train_recommender__b.partial"
    b.mkdir()
    (b / "04_train_recommender.ipynb").write_text('{"cells": [')  # caught mid-save
    c = prof / ".03_pretrain_rqvae.partial"
    c.mkdir()
    got = W.running(prof, now=160.0)
    assert got[0] == W.Running("04_train_recommender__a", "epoch 3:  41%| loss=2.9", 60.0)  # oldest save first
    assert {r.step: r.line for r in got[1:]} == {"04_train_recommender__b": "(notebook being saved; ask again)",
                                                 "03_pretrain_rqvae": "(starting: no notebook saved yet)"}
    assert cli.main(["progress", "--runs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "paper_cpu/04_train_recommender__a: epoch 3:  41%| loss=2.9" in out and "done" not in out
    assert cli.main(["progress", "--runs", str(tmp_path), "quick"]) == 1
    assert "no runs of profile 'quick'" in capsys.readouterr().err
    (tmp_path / "quick").mkdir()
    assert cli.main(["progress", "--runs", str(tmp_path), "quick"]) == 0
    assert capsys.readouterr().out.strip() == "nothing running in quick"


def test_report_names_a_missing_runs_root(tmp_path):
    with pytest.raises(FileNotFoundError):
        W.report(tmp_path / "nope", ["paper_cpu"])
