"""python -m tfsts.zoo_check (the model-zoo smoke check) as a user runs it (issue 11): reproducible numbers, the input size
printed, one-line errors for user mistakes."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def demo(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "tfsts.zoo_check", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def without_times(stdout: str) -> list[str]:
    """The table without its ms column (the only column that may change between runs)."""
    rows = []
    for line in stdout.splitlines():
        fields = line.split()
        if fields and fields[0] == "slowonly_r50":
            del fields[4]
        rows.append(" ".join(fields))
    return rows


def tf_startup_log(line: str) -> bool:
    """TensorFlow's C++ start-up lines (oneDNN, CUDA probing), printed at import whatever the log level."""
    return line.startswith(("I0000 ", "W0000 ", "E0000 ", "WARNING: All log messages before absl::InitializeLog"))


@pytest.mark.slow
def test_demo_is_reproducible_and_prints_the_input_size():
    args = ("--models=slowonly_r50", "--frames=2", "--size=32", "--repeats=1")
    first, second = demo(*args), demo(*args)
    assert first.returncode == second.returncode == 0, first.stderr
    assert without_times(first.stdout) == without_times(second.stdout)  # seeded weights and clip
    assert "input: 1 x 2 frames x 32 x 32 x 3" in first.stdout
    rows = [line.split() for line in first.stdout.splitlines() if line.startswith("slowonly_r50")]
    assert [r[1] for r in rows] == ["True", "False"] and rows[0][2] == rows[1][2] == "32,454,096"


def test_demo_user_errors_are_one_line():
    for args, expected in ((["--models=slowonly_r5"], "--models: unknown model(s) slowonly_r5"),
                           (["--frames=0"], "--frames"), (["extra"], "unexpected argument 'extra'")):
        result = demo(*args)
        lines = [line for line in result.stderr.splitlines() if line.strip() and not tf_startup_log(line)]
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert len(lines) == 1 and lines[0].startswith("tfsts.zoo_check: error:") and expected in lines[0], result.stderr
