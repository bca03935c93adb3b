"""The class order of the integer scores: whether top-k can read them directly, and if not, the thresholds that map
each class's scores to their rank among the logits.

The integer graph ends in the class scores ``I`` (integers, a known range per class) and a float tail that turns
them into the source graph's logits (``fl32(scale * I)``, then e.g. a bias per class, Brevitas' TensorNorm or a BN
on the logits). Top-k on ``I`` is only right when the tail maps every class through the same strictly increasing
function. Otherwise the dataflow graph puts one Thresholding stage between the scores and top-k: for class ``c`` it
outputs ``rank_c(I_c)``, the position of ``tail_c(I_c)`` among all the values the tail can produce for any class.
Equal logits get equal ranks and top-k breaks ties by the lower index, as ``argmax`` does, so the labels are the
logits' labels exactly: the tail is evaluated with the graph's own ops, by the same executor.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.util.basic import qonnx_make_model

from onebit.errors import UnsupportedError

#: The most codes one class's score may take for its tail to be enumerated.
MAX_SCORE_CODES = 1 << 20
#: The most rank thresholds per class the Thresholding stage may hold.
MAX_RANK_STEPS = 1 << 12


def tail_nodes(integer: ModelWrapper, scores: str) -> list[onnx.NodeProto]:
    """The nodes between the scores tensor and the graph output, in graph order."""
    reach, nodes = {scores}, []
    for n in integer.graph.node:
        if any(i in reach for i in n.input):
            nodes.append(n)
            reach.update(n.output)
    return nodes


def tail_values(integer: ModelWrapper, scores: str, codes: np.ndarray) -> np.ndarray:
    """The graph's output for score rows ``codes`` (shape (N, classes)), computed by the graph's own tail."""
    from onebit.export import graphs

    nodes = tail_nodes(integer, scores)
    out = integer.graph.output[0].name
    if not nodes:
        return codes.astype(np.float32)
    shape = [1, codes.shape[1]] + [1] * (len(integer.get_tensor_shape(scores) or [1, 1]) - 2)
    used = {i for n in nodes for i in n.input}
    inits = [t for t in integer.graph.initializer if t.name in used]
    graph = helper.make_graph(nodes, "tail", [helper.make_tensor_value_info(scores, TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, shape)], initializer=inits)
    model = ModelWrapper(qonnx_make_model(graph, opset_imports=list(integer.model.opset_import)))
    x = codes.astype(np.float32).reshape(len(codes), *shape[1:])
    return np.asarray(graphs.run(model, x), np.float32).reshape(codes.shape)


def rank_thresholds(integer: ModelWrapper, scores: str, lo: np.ndarray, hi: np.ndarray) -> np.ndarray | None:
    """None where top-k may read the scores directly; else thresholds (classes, steps) whose MultiThreshold of
    class ``c``'s score is that score's rank among every value the tail can give any class."""
    lo, hi = np.asarray(lo, np.int64).reshape(-1), np.asarray(hi, np.int64).reshape(-1)
    classes = len(lo)
    first, last = int(lo.min()), int(hi.max())
    if last - first + 1 > MAX_SCORE_CODES:
        raise UnsupportedError(f"graph output: the class scores span {last - first + 1} codes; expected at most "
                               f"{MAX_SCORE_CODES} to check the float tail's order")
    codes = np.arange(first, last + 1, dtype=np.int64)
    values = tail_values(integer, scores, np.repeat(codes[:, None], classes, axis=1))
    if not np.all(np.isfinite(values)):
        raise UnsupportedError("graph output: the float tail gives non-finite logits for some scores; expected "
                               "finite logits")
    common = np.all(values == values[:, :1])
    if common and np.all(np.diff(values[:, 0]) > 0):
        return None
    valid = [values[lo[c] - first: hi[c] - first + 1, c] for c in range(classes)]
    for c, v in enumerate(valid):
        if np.any(np.diff(v) < 0):
            tail = ", ".join(f"{n.name} ({n.op_type})" for n in tail_nodes(integer, scores))
            raise UnsupportedError(f"graph output: the float tail [{tail}] decreases class {c}'s logit as its "
                                   f"score grows; expected a tail that keeps each class's order (a positive scale)")
    levels = np.unique(np.concatenate(valid))
    if len(levels) - 1 > MAX_RANK_STEPS:
        raise UnsupportedError(f"graph output: keeping the logits' order after the float tail needs "
                               f"{len(levels) - 1} rank thresholds per class; expected at most {MAX_RANK_STEPS} "
                               f"(a last layer with a narrower score range, or one positive scale for all classes)")
    steps = len(levels) - 1
    thresholds = np.empty((classes, steps), np.float32)
    for c, v in enumerate(valid):
        rank = np.searchsorted(levels, v)  # nondecreasing in the code
        # the first code reaching rank r, or one past the class's range where it never does
        thresholds[c] = np.minimum(np.searchsorted(rank, np.arange(1, steps + 1), side="left") + lo[c], hi[c] + 1)
    return thresholds
