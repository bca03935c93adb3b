"""The reference executor: runs the dataflow graph on a batch of frames with numpy, bit-exact.

Each node runs its op class's own ``execute``; the executor can return every tensor (per-layer taps) so later
stages can name the first layer and element that differ.
"""

from __future__ import annotations

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from onebit.export.dataflow.graph import check_frames, get_op, scores_name

#: elements (float32) of all tensors of one executor chunk: bounds its memory (~256 MB)
CHUNK_ELEMENTS = 64_000_000


def execute(model: ModelWrapper, x: np.ndarray, taps: bool = False) -> dict[str, np.ndarray]:
    """Run all frames of ``x`` (N, H, W, C) through the graph; returns the outputs, or every tensor with ``taps``."""
    x = check_frames(model, x)
    ctx: dict[str, np.ndarray] = {model.graph.input[0].name: x}
    for init in model.graph.initializer:
        ctx[init.name] = model.get_initializer(init.name)
    wanted = [o.name for o in model.graph.output] + [scores_name(model)]
    # without taps a tensor is dropped after its last reader: the allocator reuses its memory for later
    # tensors (fresh memory costs a page fault per page) and the peak stays a few layers' worth
    last_read = {} if taps else {t: k for k, node in enumerate(model.graph.node) for t in node.input}
    for t in wanted:
        last_read.pop(t, None)
    n = x.shape[0]
    for k, node in enumerate(model.graph.node):
        op = get_op(node).frozen()
        outs = op.execute([ctx[i] for i in node.input])
        shape = (n, *op.output_shape()[1:])
        for name, value in zip(node.output, outs):
            ctx[name] = np.asarray(value, dtype=np.float32).reshape(shape)
        for t in node.input:
            if last_read.get(t) == k:
                ctx.pop(t, None)
    if taps:
        return ctx
    return {k: ctx[k] for k in wanted}


def execute_frames(model: ModelWrapper, x: np.ndarray, chunk: int | None = None) -> dict[str, np.ndarray]:
    """The reference executor (bit-exact) over all frames, ``chunk`` frames at a time to bound memory (default:
    as many as CHUNK_ELEMENTS allows, 1 to 256: the executor's cost per call is mostly per node, not per frame)."""
    x = check_frames(model, x)
    if chunk is None:
        per_frame = sum(int(np.prod(get_op(n).output_shape())) for n in model.graph.node)
        chunk = max(1, min(256, CHUNK_ELEMENTS // max(1, per_frame)))
    parts = [execute(model, x[k:k + chunk]) for k in range(0, len(x), chunk)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

