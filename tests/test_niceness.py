"""niceness.honour_nice: a niced kernel, alone in its session, gets its scheduling group niced too."""
import subprocess
import sys
from pathlib import Path

import pytest

from diger_lib import niceness

CHECK = ("from diger_lib import niceness; before = niceness.autogroup_nice(); changed = niceness.honour_nice(); "
         "print(before, changed, niceness.autogroup_nice())")


@pytest.mark.skipif(niceness.autogroup_nice() is None, reason="no autogroup scheduling here")
def test_a_niced_process_in_its_own_session_nices_its_autogroup():
    out = subprocess.run(["nice", "-n", "7", sys.executable, "-c", CHECK], start_new_session=True,
                         capture_output=True, text=True, timeout=60, check=True).stdout.split()
    assert out == ["0", "True", "7"]
    plain = subprocess.run([sys.executable, "-c", CHECK], start_new_session=True, capture_output=True, text=True,
                           timeout=60, check=True).stdout.split()
    assert plain == ["0", "False", "0"]  # not niced: nothing changes


def test_without_autogroups_it_does_nothing(tmp_path):
    assert niceness.autogroup_nice(tmp_path / "missing") is None
    assert niceness.honour_nice(tmp_path / "missing") is False
    odd = tmp_path / "autogroup"
    odd.write_text("something else\n")
    assert niceness.autogroup_nice(odd) is None and niceness.honour_nice(odd) is False
