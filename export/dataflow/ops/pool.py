"""Pool: reduces each window from a depthwise ConvolutionInputGenerator over its kh*kw taps: AccPool (sum,
onebit's average pooling before requantization) or MaxPool. PE channels per cycle."""

from __future__ import annotations


from onebit.errors import UnsupportedError
from onebit.export.dataflow.base import HWOp, frames
from onebit.export.dataflow.layout import StepLayout, steps


class Pool(HWOp):
    op_type = "Pool"
    attrs = {
        "Channels": ("i", True, 0), "PE": ("i", True, 1), "KernelSize": ("ints", True, []),
        "Function": ("s", True, ""), "OutImgDims": ("ints", True, []), "InputDataType": ("s", True, ""),
        "OutputDataType": ("s", True, ""), "AccumBits": ("i", False, 0), "Size": ("i", False, 1),
        "BatchSize": ("i", False, 1),
    }

    positive = ("Channels", "PE", "KernelSize", "OutImgDims")
    lengths = {"KernelSize": 2, "OutImgDims": 2}
    divides = {"PE": "Channels"}
    FUNCTIONS = ("AccPool", "MaxPool")

    def check_rules(self):
        if self.attr("Function") not in self.FUNCTIONS:
            self.fail(f"Function {self.attr('Function')!r}; expected one of {', '.join(self.FUNCTIONS)}",
                      error=UnsupportedError)

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

    def resources(self):
        return {"LUT": 100 + self.attr("PE") * self.output_dtype().bitwidth() * 2, "mem_bits": 0}

    def step_layout(self):
        """Step k reads beat k; the last tap of each (pixel, channel fold) also writes."""
        oh, ow = self.attr("OutImgDims")
        cf = self.attr("Channels") // self.attr("PE")
        k = self.taps()
        n = oh * ow * k * cf

        def positions():
            base = steps(oh * ow)[:, None] * (k * cf)
            return [steps(n)], (base + (k - 1) * cf + steps(cf)[None]).ravel()
        return StepLayout(n, positions)

    def execute(self, inputs):
        x = frames(inputs[0], self.input_shapes()[0])
        x = x.reshape(*x.shape[:3], self.taps(), self.attr("Channels"))
        fn = self.attr("Function")
        if fn == "AccPool":
            return [x.sum(axis=3)]
        if fn == "MaxPool":
            return [x.max(axis=3)]
        raise ValueError(f"Pool {self.name}: Function {fn!r}; onebit executes AccPool and MaxPool")
