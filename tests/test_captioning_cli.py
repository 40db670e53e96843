"""`trigrad check FILE:FUNCTION` on a CS231n CaptioningRNN: the function returns the model as
written (or wrapped), and the check draws its own features and captions (no input needed)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from harness.cli import main

TESTS = Path(__file__).parent


def _target(tmp_path: Path) -> Path:
    path = tmp_path / "captioner.py"
    path.write_text(
        textwrap.dedent(
            f"""
            import sys
            sys.path.insert(0, {str(TESTS)!r})
            import harness as tg
            import captioning_model as cm

            def model():
                return cm.make_model("lstm")

            def wrapped():
                return tg.wrap_captioning(cm.make_model("rnn"))

            def buggy():
                return tg.wrap_captioning(cm.make_model("rnn"), layers={{"rnn_backward": cm.rnn_backward_no_carry}})
            """
        )
    )
    return path


def test_a_captioning_model_checks_from_the_command_line(tmp_path, capsys) -> None:
    path = _target(tmp_path)
    for name in ("model", "wrapped"):
        assert main(["check", f"{path}:{name}", "--no-server", "--quiet"]) == 0, capsys.readouterr().out
    assert main(["check", f"{path}:buggy", "--no-server"]) == 1
    out = capsys.readouterr().out
    assert "cap.rnn" in out and "backward" in out, out
