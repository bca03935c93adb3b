"""LabelSelect: the indices of the K largest scores, largest first; equal scores give the lower index first."""

from __future__ import annotations

import numpy as np
from qonnx.core.datatype import DataType

from onebit.export.dataflow.base import HWOp


class LabelSelect(HWOp):
    op_type = "LabelSelect"
    attrs = {
        "Labels": ("i", True, 0), "PE": ("i", True, 1), "K": ("i", True, 1), "inputDataType": ("s", True, ""),
        "outputDataType": ("s", False, ""), "numInputVectors": ("ints", False, [1]),
    }

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

    def exp_cycles(self):
        return int(self.attr("Labels") // self.attr("PE"))

    def resources(self):
        return {"LUT": 50 + self.attr("K") * (self.input_dtype().bitwidth() + 8) * 2, "mem_bits": 0}

    def execute(self, inputs):
        x = inputs[0].reshape(-1, *self.attr("numInputVectors")[1:], self.attr("Labels"))
        order = np.argsort(-x.astype(np.float64), axis=-1, kind="stable")
        return [order[..., : self.attr("K")]]
