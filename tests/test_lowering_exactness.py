"""The integer lowering is exact on every trained model, not only well-behaved ones: small nets trained with
random settings (large learning rates included, which leave degenerate scales and negative input-BN weights)
export with every stage identical. ``ONEBIT_EXACTNESS_EXAMPLES`` sets how many nets (default 6)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onebit.export.pipeline import export_run
from onebit.training.trainer import TrainConfig, train

EXAMPLES = int(os.environ.get("ONEBIT_EXACTNESS_EXAMPLES", "6"))


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(lr=st.floats(0.01, 2.0), act=st.sampled_from(["bn-relu", "srelu"]), abits=st.integers(1, 8),
       seed=st.integers(0, 2**16), epochs=st.integers(1, 2))
def test_every_stage_identical_after_any_training(lr, act, abits, seed, epochs):
    cfg = TrainConfig(act=act, abits=abits, lr=lr, seed=seed, epochs=epochs, device="cpu")
    deterministic, rng = torch.are_deterministic_algorithms_enabled(), torch.get_rng_state()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            train(cfg, Path(tmp) / "run", quiet=True)
        finally:  # as conftest's keep_torch_globals: the trainer's global settings stay out of other tests
            torch.use_deterministic_algorithms(deterministic)
            torch.set_rng_state(rng)
        report = export_run(Path(tmp) / "run", Path(tmp) / "export", frames=120)  # raises ParityError on any difference
    # (argmax agreement is no check here: with few activation bits, logits tie up to float rounding)
    q = report["qonnx_vs_integer"]
    assert q["max_abs_diff"] <= q["tolerance"], report
    assert report["pytorch_integer_view_vs_integer"] == {"identical": True, "differing_scores": 0}, report
    assert report["integer_vs_dataflow"] == {"scores_identical": True, "labels_identical": True}, report
