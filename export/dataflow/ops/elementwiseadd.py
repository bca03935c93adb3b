"""ElementwiseAdd (FINN+'s successor of FINN's AddStreams): the residual join, an integer add of two streams
of the same shape. onebit's executor also accepts the upstream FINN name ``AddStreams``."""

from __future__ import annotations

import numpy as np
from qonnx.core.datatype import DataType

from onebit.export.dataflow.base import HWOp


class ElementwiseAdd(HWOp):
    op_type = "ElementwiseAdd"
    attrs = {
        "lhs_dtype": ("s", True, ""), "rhs_dtype": ("s", True, ""), "out_dtype": ("s", True, ""),
        "lhs_shape": ("ints", True, [1]), "rhs_shape": ("ints", True, [1]), "out_shape": ("ints", True, [1]),
        "lhs_style": ("s", False, "input"), "rhs_style": ("s", False, "input"), "PE": ("i", False, 1),
        "ram_style": ("s", False, "auto"), "mem_mode": ("s", False, "internal_embedded"),
    }

    positive = ("lhs_shape", "rhs_shape", "out_shape", "PE")
    divides = {"PE": "the channels"}

    def check_rules(self):
        shapes = [list(self.attr(a)) for a in ("lhs_shape", "rhs_shape", "out_shape")]
        if not shapes[0] == shapes[1] == shapes[2]:
            self.fail(f"lhs_shape {shapes[0]}, rhs_shape {shapes[1]} and out_shape {shapes[2]} differ; expected one "
                      f"shape")
        lo = self.input_dtype(0).min() + self.input_dtype(1).min()
        hi = self.input_dtype(0).max() + self.input_dtype(1).max()
        out = self.output_dtype()
        if lo < out.min() or hi > out.max():
            self.fail(f"out_dtype {out.name} does not hold the sums in [{lo}, {hi}] of {self.attr('lhs_dtype')} and "
                      f"{self.attr('rhs_dtype')}")

    def get_nodeattr_types(self):
        types = super().get_nodeattr_types()
        types["inFIFODepths"] = ("ints", False, [2, 2])
        return types

    def input_dtype(self, i=0):
        return DataType[self.attr("lhs_dtype" if i == 0 else "rhs_dtype")]

    def output_dtype(self):
        return self.attr_dtype("out_dtype")

    def stream_inputs(self):
        return [0, 1]

    def input_shapes(self):
        return [tuple(self.attr("lhs_shape")), tuple(self.attr("rhs_shape"))]

    def output_shape(self):
        return tuple(self.attr("out_shape"))

    def folding(self):
        return {"PE": self.output_shape()[-1]}

    def resources(self):
        return {"LUT": 20 + self.attr("PE") * self.output_dtype().bitwidth(), "mem_bits": 0}

    def pipeline_depth(self, model=None):
        """``onebit_add`` registers its sums: a beat leaves one cycle after its step."""
        return 1

    def step_layout(self):
        """Step k reads beat k and writes beat k."""
        return self.one_to_one_layout()

    def execute(self, inputs):
        bound = max(abs(dt.min()) + abs(dt.max()) for dt in (self.input_dtype(0), self.input_dtype(1)))
        if bound < 2**23:  # the sum is exact in float32
            return [np.add(inputs[0], inputs[1], dtype=np.float32)]
        return [inputs[0].astype(np.int64) + inputs[1].astype(np.int64)]
