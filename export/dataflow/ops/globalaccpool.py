"""GlobalAccPool: sums each channel over the whole feature map (global average pooling without the divide)."""

from __future__ import annotations

import numpy as np
from qonnx.core.datatype import DataType

from onebit.export.dataflow.base import HWOp
from onebit.export.dataflow.layout import StepLayout, steps


class GlobalAccPool(HWOp):
    op_type = "GlobalAccPool"
    attrs = {
        "NumChannels": ("i", True, 0), "PE": ("i", True, 1), "inputDataType": ("s", True, ""),
        "numInputVectors": ("ints", False, [1]),
    }

    positive = ("NumChannels", "PE", "numInputVectors")
    divides = {"PE": "NumChannels"}

    def output_dtype(self):
        """FINN's rule: the smallest type holding H*W times the input's extreme value."""
        vecs, idt = self.attr("numInputVectors"), self.input_dtype()
        n = int(np.prod(vecs[1:])) if len(vecs) == 3 else 1
        return DataType.get_smallest_possible(n * (idt.min() if idt.signed() else idt.max()))

    def input_shapes(self):
        return [(*self.attr("numInputVectors"), self.attr("NumChannels"))]

    def output_shape(self):
        vecs = self.attr("numInputVectors")
        return (vecs[0], 1, 1, self.attr("NumChannels")) if len(vecs) == 3 else (*vecs, self.attr("NumChannels"))

    def folding(self):
        return {"PE": self.attr("NumChannels")}

    def resources(self):
        return {"LUT": 50 + self.attr("PE") * self.output_dtype().bitwidth() * 2,
                "mem_bits": self.attr("NumChannels") * self.output_dtype().bitwidth()}

    def step_layout(self):
        """P*cf reading steps, then cf writing steps; without spatial axes a pass-through (each reading step
        writes) followed by cf idle steps, the same period."""
        n_in, n_out = self.input_beats(), self.output_beats()
        cf = self.attr("NumChannels") // self.attr("PE")
        if n_out == n_in:
            return StepLayout(n_in + cf, lambda: ([steps(n_in)], steps(n_in)))
        return StepLayout(n_in + n_out, lambda: ([steps(n_in)], steps(n_out, n_in)))

    def execute(self, inputs):
        x = inputs[0].reshape(-1, *self.attr("numInputVectors")[1:], self.attr("NumChannels"))
        if x.ndim == 4:
            return [x.astype(np.int64).sum(axis=(1, 2), keepdims=True)]
        return [x]
