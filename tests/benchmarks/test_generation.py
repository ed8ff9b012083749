"""The generation benchmark's standalone suite (what runs on a GPU box), at smoke sizes."""

import re
import sys

from benchmarks.generation import main


def test_the_standalone_suite_runs_every_section_without_django(
    tiny_model_paths, capsys, monkeypatch
):
    # The GPU box has torch and transformers but not the web stack: nothing may need Django.
    for name in ("django", "rest_framework", "celery"):
        monkeypatch.setitem(sys.modules, name, None)
    argv = [
        "--standalone",
        "--smoke",
        "--device",
        "cpu",
        "--model-dir",
        str(tiny_model_paths.policy.parent),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    sections = ("plan", "warm-up", "engine", "prefill", "floor", "mixed", "hf-eager")
    for section in (*sections, "hf-compiled"):
        assert f"== {section} (at" in out
    assert "failed" not in out
    assert re.search(r"engine 16 x 8: [\d,]+ tokens in [\d.]+ s = [\d,]+ tokens/s", out)
    assert "TARGET draft p95 under load / idle" in out
    assert re.search(r"where a draft's time went under load: waiting to join .* p95 [\d.]+ ms", out)
    # The prefill against bare forwards of the same prompts, and where its time went.
    assert re.search(r"prefill 16 rows: [\d,]+ prompt tokens in 1 forwards, .* \([\d.]+x\)", out)
    assert "prefill 16 rows, profiled" in out and "aten::" in out
    # What of a step grows with the columns it attends, and its kernels, launched one by one.
    assert re.search(r"floor 16 x 8 over 32 columns \(not 64\): [\d.]+ ms a step", out)
    floor = out[out.index("floor 16 rows, 3 forwards without a graph, profiled") :]
    assert "aten::mm" in floor[: floor.index("== mixed")]
    assert "hf-compiled 4 x 4:" in out and "first call (compilation included)" in out
