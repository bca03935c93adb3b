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
        name = self.a("outputDataType")
        return DataType[name] if name else DataType["UINT8"]

    def input_shapes(self):
        return [(*self.a("numInputVectors"), self.a("Labels"))]

    def output_shape(self):
        return (*self.a("numInputVectors"), self.a("K"))

    def fold_of_input(self, i=0):
        return self.a("PE")

    def fold_of_output(self):
        return 1

    def folding(self):
        return {"PE": self.a("Labels")}

    def exp_cycles(self):
        return int(self.a("Labels") // self.a("PE"))

    def resources(self):
        return {"LUT": 50 + self.a("K") * (self.input_dtype().bitwidth() + 8) * 2, "mem_bits": 0}

    def execute(self, inputs):
        x = inputs[0].reshape(-1, *self.a("numInputVectors")[1:], self.a("Labels"))
        order = np.argsort(-x.astype(np.float64), axis=-1, kind="stable")
        return [order[..., : self.a("K")]]
