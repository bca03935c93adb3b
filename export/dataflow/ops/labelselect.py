"""LabelSelect: the indices of the K largest scores, largest first; equal scores give the lower index first."""

from __future__ import annotations

import numpy as np
from qonnx.core.datatype import DataType

from onebit.export.dataflow.base import HWOp
from onebit.export.dataflow.layout import StepLayout, steps


class LabelSelect(HWOp):
    op_type = "LabelSelect"
    attrs = {
        "Labels": ("i", True, 0), "PE": ("i", True, 1), "K": ("i", True, 1), "inputDataType": ("s", True, ""),
        "outputDataType": ("s", False, ""), "numInputVectors": ("ints", False, [1]),
    }

    positive = ("Labels", "PE", "K", "numInputVectors")
    divides = {"PE": "Labels"}

    def check_rules(self):
        labels, k, odt = self.attr("Labels"), self.attr("K"), self.output_dtype()
        if k > labels:
            self.fail(f"K {k} is more than the {labels} Labels")
        if labels - 1 > odt.max():
            self.fail(f"outputDataType {odt.name} does not hold the label indices 0..{labels - 1}")

    def output_dtype(self):
        name = self.attr("outputDataType")
        return DataType[name] if name else DataType["UINT8"]

    def input_shapes(self):
        return [(*self.attr("numInputVectors"), self.attr("Labels"))]

    def output_shape(self):
        return (*self.attr("numInputVectors"), self.attr("K"))

    def fold_of_input(self, i=0):
        return self.attr("PE")

    def fold_of_output(self):
        return 1

    def folding(self):
        return {"PE": self.attr("Labels")}

    def step_layout(self):
        """Per input vector Labels/PE reading steps, then the K labels, the first one in the last reading step."""
        vecs = int(np.prod(self.attr("numInputVectors")))
        lf, k = self.attr("Labels") // self.attr("PE"), self.attr("K")
        per = lf + k - 1

        def positions():
            base = steps(vecs)[:, None] * per
            return [(base + steps(lf)[None]).ravel()], (base + lf - 1 + steps(k)[None]).ravel()
        return StepLayout(vecs * per, positions)

    def exp_cycles(self):
        """FINN's figure counts the reading steps of one input vector, not the K - 1 output steps after them."""
        vecs = int(np.prod(self.attr("numInputVectors")))
        return int(self.step_layout().period // vecs - (self.attr("K") - 1))

    def resources(self):
        return {"LUT": 50 + self.attr("K") * (self.input_dtype().bitwidth() + 8) * 2, "mem_bits": 0}

    def execute(self, inputs):
        x = inputs[0].reshape(-1, *self.attr("numInputVectors")[1:], self.attr("Labels"))
        order = np.argsort(-x.astype(np.float64), axis=-1, kind="stable")
        return [order[..., : self.attr("K")]]
