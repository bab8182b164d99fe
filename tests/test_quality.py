"""The quality bar (slow): the offline demo trains mobilenet_v3_small from scratch on scikit-learn's
digits at 32 px with a 4-minute budget on the CPU and must reach >= 0.97 test accuracy."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli


@pytest.mark.slow
def test_demo_reaches_the_quality_bar(tmp_path: Path):
    _, out, _ = run_cli("demo", "--time-budget", "4", home=tmp_path / "ws", timeout=900)
    assert out["dataset"]["num_images"] == 1797 and len(out["dataset"]["classes"]) == 10
    assert out["dataset"]["splits"] == {"train": 1439, "val": 179, "test": 179}  # 80/10/10 per class
    assert out["train"]["model"] == "digits-mobilenet-v3-small"
    assert out["eval"]["metrics"]["accuracy"] >= 0.97, out["eval"]["metrics"]
    assert all(Path(p).is_file() for p in out["eval"]["files"].values())
