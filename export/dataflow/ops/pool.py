"""Pool: reduces each window from a depthwise ConvolutionInputGenerator over its kh*kw taps: AccPool (sum,
onebit's average pooling before requantization) or MaxPool. PE channels per cycle."""

from __future__ import annotations

import numpy as np

from onebit.export.dataflow.base import HWOp, frames


class Pool(HWOp):
    op_type = "Pool"
    attrs = {
        "Channels": ("i", True, 0), "PE": ("i", True, 1), "KernelSize": ("ints", True, []),
        "Function": ("s", True, ""), "OutImgDims": ("ints", True, []), "InputDataType": ("s", True, ""),
        "OutputDataType": ("s", True, ""), "AccumBits": ("i", False, 0), "Size": ("i", False, 1),
        "BatchSize": ("i", False, 1),
    }

    def input_dtype(self, i=0):
        return self.attr_dtype("InputDataType")

    def output_dtype(self):
        return self.attr_dtype("OutputDataType")

    def taps(self) -> int:
        kh, kw = self.attr("KernelSize")
        return kh * kw

    def input_shapes(self):
        oh, ow = self.attr("OutImgDims")
        return [(1, oh, ow, self.taps() * self.attr("Channels"))]

    def output_shape(self):
        oh, ow = self.attr("OutImgDims")
        return (1, oh, ow, self.attr("Channels"))

    def folding(self):
        return {"PE": self.attr("Channels")}

    def exp_cycles(self):
        oh, ow = self.attr("OutImgDims")
        return int(self.attr("Channels") * self.taps() // self.attr("PE") * oh * ow)

    def resources(self):
        return {"LUT": 100 + self.attr("PE") * self.output_dtype().bitwidth() * 2, "mem_bits": 0}

    def execute(self, inputs):
        x = frames(inputs[0], self.input_shapes()[0])
        x = x.reshape(*x.shape[:3], self.taps(), self.attr("Channels"))
        fn = self.attr("Function")
        if fn == "AccPool":
            return [x.sum(axis=3)]
        if fn == "MaxPool":
            return [x.max(axis=3)]
        raise ValueError(f"Pool {self.name}: Function {fn!r}; onebit executes AccPool and MaxPool")
