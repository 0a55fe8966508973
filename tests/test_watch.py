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


def _lock(prof, **info):
    import socket

    from diger_lib.lock import LOCK_NAME
    (prof / LOCK_NAME).write_text(json.dumps({"host": socket.gethostname(), "command": "runner", **info}))


def test_report_tells_an_interrupted_step_from_a_running_one(tmp_path):
    """A staging folder is running only while a live runner holds its profile and made it after it started; a killed
    runner's folder (no holder, a dead pid, or older than the live holder) is reported as stopped."""
    import subprocess
    import sys
    import time

    from diger_lib import lock as L

    prof = tmp_path / "baselines"
    old, new = prof / ".03b_x__Yelp.partial", prof / ".03b_x__Beauty.partial"
    for folder, saved in ((old, 1_000.0), (new, 5_000.0)):
        folder.mkdir(parents=True)
        (folder / "03b_x.ipynb").write_text(json.dumps(_book(f"epoch {int(saved)}\n")))
        os.utime(folder / "03b_x.ipynb", (saved, saved))

    def lines():
        return dict(line.split(": ", 1) for line in W.report(tmp_path, ["baselines"]).splitlines())

    got = lines()  # no lock file: the runner ended or was killed
    assert all("STOPPED: no runner holds this profile; --skip-finished resumes it" in v for v in got.values()), got
    _lock(prof, pid=os.getpid(), started_unix=3_000.0)  # a live runner that started between the two saves
    got = lines()
    assert "STOPPED: left by an earlier runner" in got["baselines/03b_x__Yelp"]
    assert got["baselines/03b_x__Beauty"].startswith("epoch 5000") and "STOPPED" not in got["baselines/03b_x__Beauty"]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _lock(prof, pid=dead.pid, started_unix=3_000.0)  # its process is gone (the machine stopped, kill -9)
    assert L.live_holder(prof / L.LOCK_NAME) is None
    assert all("no runner holds" in v for v in lines().values())
    # a lock written before started_unix existed: its local-time text is read instead
    text = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(3_000.0))
    assert L.started_at({"started": text}) == 3_000.0 and L.started_at({"started": "?"}) == 0.0
    _lock(prof, pid=os.getpid(), started=text)
    assert "STOPPED" not in lines()["baselines/03b_x__Beauty"] and "earlier runner" in lines()["baselines/03b_x__Yelp"]
    _lock(prof, pid=os.getpid(), host="elsewhere", started_unix=3_000.0)  # another host: taken as alive
    assert "STOPPED" not in lines()["baselines/03b_x__Beauty"]


def test_a_runner_lock_records_when_it_started(tmp_path):
    from diger_lib import lock as L

    import time

    t0 = time.time()
    with L.profile_lock(tmp_path / L.LOCK_NAME, "runner --profile x") as me:
        held = L.live_holder(tmp_path / L.LOCK_NAME)
        assert held["pid"] == os.getpid() and t0 <= L.started_at(held) <= time.time() and held == me
    assert L.live_holder(tmp_path / L.LOCK_NAME) is None  # released: its file is gone
