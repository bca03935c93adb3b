"""Loading, cleaning and executing ONNX/QONNX graphs, with one-line errors for bad files."""

from __future__ import annotations

import copy
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.base import Transformation
from qonnx.transformation.fold_constants import FoldConstants
from qonnx.transformation.general import RemoveUnusedTensors
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes

from onebit.errors import GraphError, OnebitError, one_line

# onnxruntime logs a failing node on stderr itself, beside the error onebit reports: keep only onebit's line
onnxruntime.set_default_logger_severity(4)


def load_onnx(path: str | Path) -> ModelWrapper:
    """Read an ONNX file; a missing, truncated or non-ONNX file raises GraphError naming it."""
    path = Path(path)
    if not path.is_file():
        raise GraphError(f"{path}: no such ONNX file")
    try:
        proto = onnx.load(str(path))
    except Exception as e:  # protobuf raises DecodeError, but truncation can surface as others
        raise GraphError(f"{path}: not a readable ONNX model ({type(e).__name__}: {str(e)[:120]})") from None
    if not proto.graph.node:
        raise GraphError(f"{path}: the ONNX model has no nodes (empty or truncated file)")
    _check_text(proto, path)
    _check(proto, path)
    return ModelWrapper(proto)


def _check_text(proto: onnx.ModelProto, path: Path) -> None:
    """Every name, op type, domain and metadata entry is UTF-8 text: protobuf does not check on parsing, and
    hands back bytes where a string is not."""
    g = proto.graph
    texts = [proto.domain, proto.producer_name, g.name, *(o.domain for o in proto.opset_import),
             *(t for m in proto.metadata_props for t in (m.key, m.value)),
             *(v.name for v in (*g.input, *g.output, *g.value_info)), *(i.name for i in g.initializer),
             *(t for n in g.node for t in (n.name, n.op_type, n.domain, *n.input, *n.output,
                                             *(a.name for a in n.attribute)))]
    if not all(isinstance(t, str) for t in texts):
        raise GraphError(f"{path}: invalid ONNX model (a name or string is not UTF-8 text)")


#: the custom-op domains of QONNX, FINN, Brevitas and onebit: their ops have no schema in onnx's checker
CUSTOM_DOMAINS = ("qonnx.", "finn.", "onebit.", "onnx.brevitas")


def _check(proto: onnx.ModelProto, path: Path) -> None:
    """onnx's checker on everything; a known custom domain that the file uses without importing it (QONNX and
    FINN files often do) is imported for the check only, so the checker skips just those ops, which have no
    schema. A node of any other unimported domain, like every other problem, is an error naming the file."""
    imported = {o.domain for o in proto.opset_import}
    custom = sorted({n.domain for n in proto.graph.node
                     if n.domain not in imported and n.domain.startswith(CUSTOM_DOMAINS)})
    n_opsets = len(proto.opset_import)
    proto.opset_import.extend(onnx.helper.make_opsetid(d, 1) for d in custom)
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as e:
        raise GraphError(f"{path}: invalid ONNX model ({one_line(' '.join(str(e).split()))[:200]})") from None
    except UnicodeDecodeError:  # a name or string that is not UTF-8 (protobuf does not check on parsing)
        raise GraphError(f"{path}: invalid ONNX model (a name or string is not UTF-8 text)") from None
    finally:
        del proto.opset_import[n_opsets:]


class RemoveInitializerInputs(Transformation):
    """Drop graph inputs that are initializers (torch's dynamo exporter lists parameters as inputs)."""

    def apply(self, model):
        inits = {i.name for i in model.graph.initializer}
        extra = [i for i in model.graph.input if i.name in inits]
        for i in extra:
            model.graph.input.remove(i)
        return model, False


class BatchFreeReshape(Transformation):
    """Make a constant Reshape that keeps the batch axis independent of the batch size.

    torch's dynamo exporter writes ``nn.Flatten``/``x.view(x.size(0), -1)`` of a batch-1 example as
    ``Reshape(x, [1, K])``, which fails on a batch of N frames. When the target's other dims hold exactly
    the input's non-batch elements, the leading 1 becomes -1 (the batch, whatever its size).
    """

    def apply(self, model):
        for node in model.graph.node:
            if node.op_type != "Reshape" or len(node.input) < 2:
                continue
            target = model.get_initializer(node.input[1])
            in_shape = model.get_tensor_shape(node.input[0])
            if target is None or in_shape is None or target.ndim != 1 or len(target) < 1 or not in_shape:
                continue
            target = target.astype(np.int64)
            rest = [int(v) for v in target[1:]]
            if int(target[0]) != 1 or in_shape[0] != 1 or -1 in rest or 0 in rest:
                continue
            if int(np.prod(rest)) != int(np.prod(in_shape[1:])):
                continue
            new = target.copy()
            new[0] = -1
            name = model.make_new_valueinfo_name()
            model.set_initializer(name, new)
            node.input[1] = name
        return model, False


class NameNodes(Transformation):
    """Unique node names that keep the user's: a node keeps a name no other node has; an unnamed or
    repeated one is called ``<op type>_<n>`` (qonnx's GiveUniqueNodeNames renames every node, and errors would
    name nodes the user's graph does not have)."""

    def apply(self, model):
        counts: dict[str, int] = {}
        for n in model.graph.node:
            counts[n.name] = counts.get(n.name, 0) + 1
        taken = {name for name, c in counts.items() if name and c == 1}
        next_index: dict[str, int] = {}
        for n in model.graph.node:
            if n.name in taken and counts[n.name] == 1:
                continue
            k = next_index.get(n.op_type, 0)
            while f"{n.op_type}_{k}" in taken:
                k += 1
            n.name = f"{n.op_type}_{k}"
            taken.add(n.name)
            next_index[n.op_type] = k + 1
        return model, False


def clean(model: ModelWrapper, source: str | Path | None = None) -> ModelWrapper:
    """qonnx's standard tidy-up: shapes, constant folding (quantizers kept), unique node names, data types.
    ``source``: the user's file the graph came from (see :func:`foreign_errors`)."""
    for t in (RemoveInitializerInputs(), InferShapes(), FoldConstants(exclude_op_types=["Quant", "BipolarQuant"]),
              BatchFreeReshape(), RemoveUnusedTensors(), NameNodes(), InferShapes(), InferDataTypes()):
        with foreign_errors(source, f"qonnx's {type(t).__name__}"):
            model = model.transform(t)
    return model


#: the libraries whose exceptions on a user's graph are the graph's problem, not onebit's
FOREIGN_LIBRARIES = {"qonnx", "onnx", "onnxruntime", "onnxoptimizer"}


@contextmanager
def foreign_errors(source: str | Path | None, what: str):
    """An exception raised inside qonnx, onnx or onnxruntime while they work on the graph from ``source`` (a
    user's file) becomes a GraphError naming the file and ``what`` failed; onebit's own exceptions, and any
    exception on a graph onebit made itself (``source`` None), pass unchanged."""
    try:
        yield
    except OnebitError:
        raise
    except Exception as e:
        library = _raised_in(e)
        if source is None or library not in FOREIGN_LIBRARIES:
            raise
        raise GraphError(f"{source}: {what} failed in {library} ({type(e).__name__}: "
                         f"{one_line(' '.join(str(e).split()))[:200]})") from None


def _raised_in(e: BaseException) -> str:
    """The top-level package whose code raised ``e`` (its innermost Python frame)."""
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_globals.get("__name__", "").split(".")[0] if tb is not None else ""


def with_batch(model: ModelWrapper, n: int) -> ModelWrapper:
    """A copy of ``model`` whose first input and outputs have batch size ``n``."""
    m = ModelWrapper(copy.deepcopy(model.model))
    del m.graph.value_info[:]
    for vi in list(m.graph.input[:1]) + list(m.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_param")
            dims[0].dim_value = n
    for node in m.graph.node:  # a Reshape to a constant shape of batch 1 (PyTorch's x.view(x.shape[0], -1))
        target = m.get_initializer(node.input[1]) if node.op_type == "Reshape" and len(node.input) > 1 else None
        shape = model.get_tensor_shape(node.output[0]) if target is not None else None
        if target is not None and target.ndim == 1 and target.size and target[0] == 1 and shape and shape[0] == 1 \
                and all(d > 0 for d in shape):
            name = node.input[1] + "_batched"
            m.set_initializer(name, np.array([-1, *shape[1:]], np.int64))
            node.input[1] = name
    return m.transform(InferShapes())


def check_input(model: ModelWrapper, x: np.ndarray, source: str = "input", *, param: str | None = None) -> None:
    """GraphError unless ``x`` fits the graph input; the message starts with ``source``, and ``param`` names the
    library parameter ``x`` came from (when ``source`` is that name)."""
    name = model.graph.input[0].name
    expected = model.get_tensor_shape(name)
    if expected is not None and list(x.shape[1:]) != list(expected[1:]):
        raise GraphError(f"{source}: graph input {name!r} expects shape (N, {', '.join(map(str, expected[1:]))}), "
                         f"got {tuple(x.shape)}", param=param)


def run(model: ModelWrapper, x: np.ndarray, return_all: bool = False):
    """Execute a whole batch node by node as qonnx does (standard ops through onnxruntime, custom ops in numpy),
    with two differences: MultiThreshold runs as one sorted search per channel (qonnx compares every value with
    every threshold: 1 s a frame for a 28x28 WRN), and no tensor is rounded to its annotated type on the way
    (qonnx's sanitising would hide a lowering that is not exact)."""
    import qonnx.analysis.topology as ta
    from qonnx.core.onnx_exec import execute_node, execute_onnx
    from qonnx.util.basic import get_preferred_qonnx_opset

    check_input(model, x)
    batched = with_batch(model, len(x))
    if not (batched.check_all_tensor_shapes_specified()
            and batched.analysis(ta.nodes_topologically_sorted)["nodes_topologically_sorted"]):
        # qonnx refuses such a graph itself, and its error is reported as every other qonnx error on a file
        ctx = execute_onnx(batched, {batched.graph.input[0].name: x}, return_full_exec_context=return_all)
        return ctx if return_all else ctx[batched.graph.output[0].name]
    ctx = batched.make_empty_exec_context()
    ctx[batched.graph.input[0].name] = x
    opsets = batched.get_opset_imports()
    for node in batched.graph.node:
        if node.op_type == "MultiThreshold" and node.domain.startswith("qonnx"):
            _multithreshold(node, ctx)
        else:
            execute_node(node, ctx, batched.graph, opsets.get(node.domain, get_preferred_qonnx_opset()), return_all)
    return ctx if return_all else ctx[batched.graph.output[0].name]


def _multithreshold(node, ctx: dict) -> None:
    """qonnx's MultiThreshold (the count of thresholds each value is >= to, times out_scale, plus out_bias), the
    channel axis found as qonnx finds it, computed with ``searchsorted``."""
    from qonnx.custom_op.registry import getCustomOp

    op = getCustomOp(node)
    v, thresholds = ctx[node.input[0]], np.sort(ctx[node.input[1]], axis=1)
    layout = op.get_nodeattr("data_layout")
    if not layout and v.ndim < 5:
        layout = {0: None, 1: None, 2: "NC", 3: "NWC", 4: "NCHW"}[v.ndim]
    cdim = layout.index("C") if layout and "C" in layout else 1
    vm = np.moveaxis(v, cdim, -1)
    if thresholds.shape[0] == 1:
        count = np.searchsorted(thresholds[0], vm, side="right")
    else:
        if thresholds.shape[0] != vm.shape[-1]:
            raise GraphError(f"node {node.name} (MultiThreshold): {thresholds.shape[0]} threshold rows for "
                             f"{vm.shape[-1]} channels")
        count = np.empty(vm.shape, np.int64)
        for c in range(vm.shape[-1]):
            count[..., c] = np.searchsorted(thresholds[c], vm[..., c], side="right")
    count = np.where(np.isnan(vm), 0, count)  # NaN is >= no threshold
    out = op.get_nodeattr("out_scale") * count.astype(v.dtype) + op.get_nodeattr("out_bias")
    ctx[node.output[0]] = np.moveaxis(out, -1, cdim)
