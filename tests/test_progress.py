"""Progress bars only on a terminal: a piped log holds lines, not carriage returns."""
from __future__ import annotations

import io
import subprocess
import sys

from rssnn_deploy.progress import bars_shown, progress_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bars_need_a_terminal_and_the_wish(monkeypatch):
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert not bars_shown(True)
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert bars_shown(True) and not bars_shown(False)


def test_a_bar_on_a_terminal_redraws_and_off_it_writes_nothing(monkeypatch):
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    for stream, drawn in ((_Terminal(), True), (io.StringIO(), False)):
        monkeypatch.setattr(sys, "stderr", stream)
        assert sum(progress_bar(range(5), desc="x", mininterval=0)) == 10
        assert ("\r" in stream.getvalue()) is drawn


def test_training_with_stderr_piped_logs_epochs_without_carriage_returns(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "rssnn_deploy.cli.main", "train", "--epochs", "2",
         "--max-batches", "20", "--hidden", "8", "--out", str(tmp_path / "run")],
        capture_output=True, timeout=600)        # bytes: text mode would turn \r into \n
    assert done.returncode == 0, done.stderr
    assert b"\r" not in done.stderr and b"\r" not in done.stdout
    assert b"epoch 1 [float]" in done.stdout and b"epoch 2 [float]" in done.stdout
