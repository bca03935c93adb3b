"""Integer graph (NCHW, standard ops + MultiThreshold) -> dataflow graph of HW layers (NHWC).

Per integer op:

- Conv (group 1) -> [FMPadding] -> ConvolutionInputGenerator -> MVAU; a following MultiThreshold that is the
  conv's only consumer is fused into the MVAU (thresholds), else the MVAU outputs its accumulators;
  a 1x1 stride-1 conv needs no sliding window;
- depthwise all-ones Conv (sum pooling) -> ConvolutionInputGenerator(depthwise) -> Pool(AccPool);
- MaxPool -> ConvolutionInputGenerator(depthwise) -> Pool(MaxPool);
- MultiThreshold (standalone) -> Thresholding;  Add -> ElementwiseAdd;  ReduceSum(H, W) -> GlobalAccPool;
- Pad on channels -> ChannelPad; on height/width -> FMPadding;  MatMul -> MVAU (after a Flatten of an NHWC map
  the weight rows are reordered from C,H,W to H,W,C order);  Flatten/Reshape -> nothing (the stream is the same);
- the class scores -> LabelSelect (top-k), through their ranks (a Thresholding) where the float tail does not
  keep their order; tensors read by several layers -> DuplicateStreams.

All layers start unfolded (PE = SIMD = 1); :mod:`onebit.export.dataflow.folding` sets them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.util.basic import qonnx_make_model

from onebit.errors import UnsupportedError
from onebit.export.dataflow import graph as dfg
from onebit.export.dataflow.base import FINN_DOMAIN, ONEBIT_DOMAIN
from onebit.export.dataflow.ops import OPS
from onebit.export.integer import META_OUTPUT
from onebit.export.score_order import rank_thresholds


@dataclass
class Stream:
    """A dataflow tensor: NHWC shape (batch 1), data type; ``nchw_flat`` if it stands for a Flatten of (C, H, W)."""

    name: str
    shape: tuple
    dtype: DataType
    nchw_flat: tuple | None = None


class Converter:
    def __init__(self, integer: ModelWrapper, top_k: int = 1):
        self.src = integer
        self.top_k = top_k
        self.nodes: list[onnx.NodeProto] = []
        self.inits: dict[str, tuple[np.ndarray, DataType]] = {}
        self.streams: dict[str, Stream] = {}
        self.shapes: dict[str, tuple] = {}
        self.dtypes: dict[str, DataType] = {}
        self.count: dict[str, int] = {}
        self.fused: dict[str, onnx.NodeProto] = {}  # MultiThreshold output name -> its MVAU producer's node

    # ----- helpers ----------------------------------------------------------------------------------
    def name(self, stem: str) -> str:
        self.count[stem] = self.count.get(stem, -1) + 1
        return f"{stem}_{self.count[stem]}"

    def emit(self, op_type: str, inputs: list[str], /, dtype: DataType | None = None, **attrs) -> Stream:
        """Append a node of ``op_type``; its output stream's shape and data type are the op's own (``dtype``
        overrides the type where the integer graph knows a tighter one than the op's rule)."""
        cls = OPS[op_type]
        node_name = self.name(op_type)
        out = node_name + "_out"
        extra = {"backend": "fpgadataflow"} if cls.domain == FINN_DOMAIN else {}
        node = helper.make_node(op_type, inputs, [out], name=node_name, domain=cls.domain, **extra, **attrs)
        self.nodes.append(node)
        op = cls(node)
        shape, dtype = tuple(op.output_shape()), dtype or op.output_dtype()
        self.shapes[out], self.dtypes[out] = shape, dtype
        return Stream(out, shape, dtype)

    def param(self, stem: str, value: np.ndarray, dtype: DataType) -> str:
        name = self.name(stem)
        self.inits[name] = (np.asarray(value, np.float32), dtype)
        return name

    def stream(self, node, i: int = 0) -> Stream:
        s = self.streams.get(node.input[i])
        if s is None:
            raise UnsupportedError(f"node {node.name} ({node.op_type}): input {node.input[i]!r} is not a stream "
                                   f"of the integer graph")
        return s

    def attrs(self, node) -> dict:
        values = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        return {k: v.decode() if isinstance(v, bytes) else v for k, v in values.items()}

    def consumers(self, tensor: str) -> list:
        return self.src.find_consumers(tensor) or []

    def int_dtype(self, tensor: str) -> DataType:
        return self.src.get_tensor_datatype(tensor)

    # ----- conversion -------------------------------------------------------------------------------
    def run(self) -> ModelWrapper:
        inp = self.src.graph.input[0]
        shape = self.src.get_tensor_shape(inp.name)
        nhwc = (1, shape[2], shape[3], shape[1]) if len(shape) == 4 else (1, *shape[1:])
        in_name = "global_in"
        self.streams[inp.name] = Stream(in_name, nhwc, self.int_dtype(inp.name))
        self.shapes[in_name], self.dtypes[in_name] = nhwc, self.int_dtype(inp.name)
        out_tensor = json.loads(self.src.get_metadata_prop(META_OUTPUT))["tensor"]
        for node in self.src.graph.node:
            if node.output[0] in self.fused:
                continue
            handler = getattr(self, f"on_{node.op_type}", None)
            if handler is None:
                raise UnsupportedError(f"node {node.name} ({node.op_type}): no dataflow layer for this op")
            handler(node)
            if node.output[0] == out_tensor:
                break
        return self.finish(out_tensor)

    def on_MultiThreshold(self, node):
        x = self.stream(node)
        t = self.src.get_initializer(node.input[1])
        a = self.attrs(node)
        out_dt = DataType[a["out_dtype"]]
        scale, bias = float(a.get("out_scale", 1.0)), float(a.get("out_bias", 0.0))
        if not (scale == 1.0 or (out_dt.name == "BIPOLAR" and scale == 2.0 and bias == -1.0)):
            raise UnsupportedError(f"node {node.name} (MultiThreshold): out_scale {scale}; expected 1")
        c = x.shape[-1]
        self.streams[node.output[0]] = self.emit(
            "Thresholding", [x.name, self.param("thresholds", t, threshold_dtype(t))],
            PE=1, NumChannels=c, numSteps=int(t.shape[1]), inputDataType=x.dtype.name,
            weightDataType=threshold_dtype(t).name, outputDataType=out_dt.name,
            numInputVectors=list(x.shape[:-1]), ActVal=0 if out_dt.name == "BIPOLAR" else int(bias))

    def fusable_threshold(self, node):
        cons = self.consumers(node.output[0])
        if len(cons) == 1 and cons[0].op_type == "MultiThreshold":
            a = self.attrs(cons[0])
            if float(a.get("out_scale", 1.0)) == 1.0 or a["out_dtype"] == "BIPOLAR":
                return cons[0]
        return None

    def mvau(self, node, x: Stream, weights: np.ndarray, vecs: list[int], acc_tensor: str) -> Stream:
        mw, mh = weights.shape
        wdt = DataType["BIPOLAR"] if set(np.unique(weights)) <= {-1.0, 1.0} else dtype_of(weights)
        acc_dt = self.int_dtype(acc_tensor)
        mt = self.fusable_threshold(node)
        inputs = [x.name, self.param("weights", weights, wdt)]
        attrs = dict(PE=1, SIMD=1, MW=mw, MH=mh, inputDataType=x.dtype.name, weightDataType=wdt.name,
                     accDataType=acc_dt.name, numInputVectors=vecs, mem_mode="internal_decoupled",
                     binaryXnorMode=0, resType="lut")
        if mt is not None:
            t = self.src.get_initializer(mt.input[1])
            a = self.attrs(mt)
            out_dt = DataType[a["out_dtype"]]
            inputs.append(self.param("thresholds", t, threshold_dtype(t)))
            out = self.emit("MVAU", inputs, noActivation=0, outputDataType=out_dt.name,
                            ActVal=0 if out_dt.name == "BIPOLAR" else int(a.get("out_bias", 0)), **attrs)
            self.fused[mt.output[0]] = node
            self.streams[mt.output[0]] = out
        else:
            out = self.emit("MVAU", inputs, noActivation=1, outputDataType=acc_dt.name,
                            **attrs)
        self.streams[node.output[0]] = out
        return out

    def sliding_window(self, x: Stream, kernel, stride, dilation, pads, depthwise: int) -> tuple[Stream, int, int]:
        _, h, w, c = x.shape
        if any(pads):
            t, l, b, r = pads
            x = self.emit("FMPadding", [x.name], ImgDim=[h, w],
                          Padding=list(pads), NumChannels=c, SIMD=1, inputDataType=x.dtype.name)
            _, h, w, c = x.shape
        kh, kw = kernel
        oh = (h - dilation[0] * (kh - 1) - 1) // stride[0] + 1
        ow = (w - dilation[1] * (kw - 1) - 1) // stride[1] + 1
        out = self.emit("ConvolutionInputGenerator", [x.name],
                        ConvKernelDim=[kh, kw], IFMChannels=c, IFMDim=[h, w], OFMDim=[oh, ow], SIMD=1,
                        Stride=list(stride), Dilation=list(dilation), inputDataType=x.dtype.name,
                        outputDataType=x.dtype.name, depthwise=depthwise)
        return out, oh, ow

    def on_Conv(self, node):
        x = self.stream(node)
        w = self.src.get_initializer(node.input[1])
        a = self.attrs(node)
        kernel = list(a.get("kernel_shape", w.shape[2:]))
        stride, dil = list(a.get("strides", [1, 1])), list(a.get("dilations", [1, 1]))
        pads, group = list(a.get("pads", [0, 0, 0, 0])), int(a.get("group", 1))
        c = x.shape[-1]
        if group == c and c > 1 and w.shape[1] == 1 and np.all(w == 1):
            win, oh, ow = self.sliding_window(x, kernel, stride, dil, pads, depthwise=1)
            out_dt = self.int_dtype(node.output[0])
            self.streams[node.output[0]] = self.emit(
                "Pool", [win.name], Channels=c, PE=1, KernelSize=kernel, Function="AccPool",
                OutImgDims=[oh, ow], InputDataType=x.dtype.name, OutputDataType=out_dt.name,
                AccumBits=out_dt.bitwidth())
            return
        if group != 1:
            raise UnsupportedError(f"node {node.name} (Conv): group {group}; expected a dense conv (group 1) or "
                                   f"all-ones depthwise sum pooling")
        if kernel == [1, 1] and stride == [1, 1] and not any(pads):
            win, oh, ow = x, x.shape[1], x.shape[2]
        else:
            win, oh, ow = self.sliding_window(x, kernel, stride, dil, pads, depthwise=0)
        cout, cin, kh, kw = w.shape
        weights = w.transpose(2, 3, 1, 0).reshape(kh * kw * cin, cout)  # rows in (kh, kw, cin) order
        self.mvau(node, win, weights, [1, oh, ow], node.output[0])

    def on_MatMul(self, node):
        x = self.stream(node)
        w = self.src.get_initializer(node.input[1])
        if x.nchw_flat is not None:
            c, h, ww = x.nchw_flat
            w = w.reshape(c, h, ww, -1).transpose(1, 2, 0, 3).reshape(c * h * ww, -1)
        flat = Stream(x.name, (1, int(np.prod(x.shape[1:]))), x.dtype)
        self.mvau(node, flat, w, [1], node.output[0])

    def on_MaxPool(self, node):
        x = self.stream(node)
        a = self.attrs(node)
        kernel = list(a["kernel_shape"])
        win, oh, ow = self.sliding_window(x, kernel, list(a.get("strides", kernel)), [1, 1],
                                          list(a.get("pads", [0, 0, 0, 0])), depthwise=1)
        c = x.shape[-1]
        self.streams[node.output[0]] = self.emit(
            "Pool", [win.name], Channels=c, PE=1, KernelSize=kernel, Function="MaxPool",
            OutImgDims=[oh, ow], InputDataType=x.dtype.name, OutputDataType=x.dtype.name)

    def on_Add(self, node):
        a, b = self.stream(node, 0), self.stream(node, 1)
        if a.shape != b.shape:
            raise UnsupportedError(f"node {node.name} (Add): input shapes {a.shape} and {b.shape} differ")
        out_dt = self.int_dtype(node.output[0])
        self.streams[node.output[0]] = self.emit(
            "ElementwiseAdd", [a.name, b.name], lhs_dtype=a.dtype.name, rhs_dtype=b.dtype.name,
            out_dtype=out_dt.name, lhs_shape=list(a.shape), rhs_shape=list(b.shape), out_shape=list(a.shape), PE=1)

    def on_Pad(self, node):
        x = self.stream(node)
        pads = [int(p) for p in self.src.get_initializer(node.input[1])]
        nd = len(pads) // 2
        before, after = pads[:nd], pads[nd:]
        if nd == 4 and before[0] == after[0] == 0 and before[2:] == [0, 0] and after[2:] == [0, 0] and before[1] == 0:
            c_out = x.shape[-1] + after[1]
            self.streams[node.output[0]] = self.emit(
                "ChannelPad", [x.name], NumChannels=x.shape[-1], OutChannels=c_out,
                PE=1, inputDataType=x.dtype.name, numInputVectors=list(x.shape[:-1]))
        elif nd == 4 and before[:2] == [0, 0] and after[:2] == [0, 0]:
            _, h, w, c = x.shape
            t, l, b, r = before[2], before[3], after[2], after[3]
            self.streams[node.output[0]] = self.emit(
                "FMPadding", [x.name], ImgDim=[h, w], Padding=[t, l, b, r],
                NumChannels=c, SIMD=1, inputDataType=x.dtype.name)
        else:
            raise UnsupportedError(f"node {node.name} (Pad): pads {pads}; expected zero channels appended at the end "
                                   f"or spatial padding")

    def on_ReduceSum(self, node):
        x = self.stream(node)
        _, h, w, c = x.shape
        # the op's own rule (H*W times the input type's extreme), which the RTL sizes its sums by: the integer
        # graph's exact range is narrower when H*W is no power of two (7x7: INT17 where the rule says INT18)
        out = self.emit("GlobalAccPool", [x.name], NumChannels=c, PE=1, inputDataType=x.dtype.name,
                        numInputVectors=[1, h, w])
        self.streams[node.output[0]] = out

    def on_Flatten(self, node):
        x = self.stream(node)
        out_shape = self.src.get_tensor_shape(node.output[0])
        if out_shape is None or len(out_shape) != 2:
            raise UnsupportedError(f"node {node.name} ({node.op_type}): output shape {out_shape}; expected a flatten "
                                   f"to (N, features)")
        nchw = (x.shape[3], x.shape[1], x.shape[2]) if len(x.shape) == 4 and x.shape[1] * x.shape[2] > 1 else None
        self.streams[node.output[0]] = Stream(x.name, x.shape, x.dtype, nchw)

    on_Reshape = on_Flatten

    # ----- the end: scores, top-k, forks ---------------------------------------------------------------
    def finish(self, out_tensor: str) -> ModelWrapper:
        scores = self.streams[out_tensor]
        labels = scores.shape[-1]
        meta = json.loads(self.src.get_metadata_prop(META_OUTPUT))
        order = self.score_ranks(scores, out_tensor, meta)
        k = min(self.top_k, labels)
        top = self.emit("LabelSelect", [order.name], Labels=labels, PE=1, K=k, inputDataType=order.dtype.name,
                        outputDataType="UINT8" if labels <= 256 else "UINT16", numInputVectors=list(order.shape[:-1]))
        self.insert_forks()
        return self.build(top, scores, meta)

    def score_ranks(self, scores: Stream, out_tensor: str, meta: dict) -> Stream:
        """The scores themselves where the float tail keeps their order, else their ranks among the logits
        (:mod:`onebit.export.score_order`), so that top-k gives the logits' labels."""
        if meta.get("tail_keeps_order", True) or "lo" not in meta:
            return scores
        if int(np.prod(scores.shape[:-1])) != 1:
            raise UnsupportedError(f"graph output: class scores of shape {list(scores.shape)} with a float tail "
                                   f"that changes their order; expected one score per class")
        t = rank_thresholds(self.src, out_tensor, meta["lo"], meta["hi"])
        if t is None:
            return scores
        rank_dt = dtype_of(np.asarray([0, t.shape[1]]))
        return self.emit("Thresholding", [scores.name, self.param("ranks", t, threshold_dtype(t))],
                         dtype=rank_dt, PE=1, NumChannels=scores.shape[-1], numSteps=int(t.shape[1]),
                         inputDataType=scores.dtype.name, weightDataType=threshold_dtype(t).name,
                         outputDataType=rank_dt.name, numInputVectors=list(scores.shape[:-1]), ActVal=0)

    def insert_forks(self):
        readers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
        for n in self.nodes:
            for i, t in enumerate(n.input):
                if t in self.shapes:
                    readers.setdefault(t, []).append((n, i))
        for tensor, uses in readers.items():
            if len(uses) < 2:
                continue
            shape, dt = self.shapes[tensor], self.dtypes[tensor]
            node_name = self.name("DuplicateStreams")
            outs = [f"{node_name}_out{j}" for j in range(len(uses))]
            fork = helper.make_node("DuplicateStreams", [tensor], outs, name=node_name, domain=FINN_DOMAIN,
                                    backend="fpgadataflow", NumChannels=shape[-1], PE=1, NumOutputStreams=len(uses),
                                    inputDataType=dt.name, numInputVectors=list(shape[:-1]))
            for (consumer, idx), out in zip(uses, outs):
                consumer.input[idx] = out
                self.shapes[out], self.dtypes[out] = shape, dt
            producer = next((k for k, n in enumerate(self.nodes) if tensor in n.output), -1)
            self.nodes.insert(producer + 1, fork)

    def build(self, top: Stream, scores: Stream, meta: dict) -> ModelWrapper:
        inp = helper.make_tensor_value_info("global_in", TensorProto.FLOAT, list(self.shapes["global_in"]))
        out = helper.make_tensor_value_info(top.name, TensorProto.FLOAT, list(top.shape))
        vis = [helper.make_tensor_value_info(t, TensorProto.FLOAT, list(s)) for t, s in self.shapes.items()
               if t not in ("global_in", top.name)]
        inits = [onnx.numpy_helper.from_array(v, k) for k, (v, _) in self.inits.items()]
        graph = helper.make_graph(self.nodes, "dataflow", [inp], [out], initializer=inits, value_info=vis)
        opsets = [helper.make_opsetid("", 13), helper.make_opsetid(FINN_DOMAIN, 1),
                  helper.make_opsetid(ONEBIT_DOMAIN, 1)]
        model = ModelWrapper(qonnx_make_model(graph, opset_imports=opsets, producer_name="onebit"))
        for t, dt in self.dtypes.items():
            model.set_tensor_datatype(t, dt)
        for k, (_, dt) in self.inits.items():
            model.set_tensor_datatype(k, dt)
        model.set_metadata_prop(dfg.META_SCORES, scores.name)
        model.set_metadata_prop(dfg.META_SCORE_SCALE, json.dumps(meta["scale"]))
        model.set_metadata_prop(dfg.META_TAIL, json.dumps(meta.get("tail_ops", [])))
        return model


def dtype_of(values: np.ndarray) -> DataType:
    from onebit.export.integer_lowering import dtype_for

    return dtype_for(float(values.min()), float(values.max()))


def threshold_dtype(t: np.ndarray) -> DataType:
    return dtype_of(t) if t.size else DataType["INT2"]


def to_dataflow(integer: ModelWrapper, top_k: int = 1) -> ModelWrapper:
    """Convert an integer graph (from :func:`onebit.export.integer.to_integer_graph`) to a dataflow graph."""
    return Converter(integer, top_k).run()
