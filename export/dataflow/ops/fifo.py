"""StreamingFIFO: a ``depth``-beat FIFO on a stream (values unchanged); depths come from the simulator, which folds
the FIFO into the edge it sits on (its layout is the 1:1 stream of what passes through)."""

from __future__ import annotations

import numpy as np

from onebit.export.dataflow.base import HWOp


class StreamingFIFO(HWOp):
    op_type = "StreamingFIFO"
    attrs = {
        "depth": ("i", True, 2), "folded_shape": ("ints", True, []), "normal_shape": ("ints", True, []),
        "dataType": ("s", True, ""), "ram_style": ("s", False, "auto"), "depth_monitor": ("i", False, 0),
    }

    positive = ("depth", "folded_shape", "normal_shape")

    def check_rules(self):
        folded, normal = self.attr("folded_shape"), self.attr("normal_shape")
        if int(np.prod(folded)) != int(np.prod(normal)) or normal[-1] % folded[-1]:
            self.fail(f"folded_shape {list(folded)} is not a folding of normal_shape {list(normal)}")

    def input_dtype(self, i=0):
        return self.attr_dtype("dataType")

    def output_dtype(self):
        return self.attr_dtype("dataType")

    def input_shapes(self):
        return [tuple(self.attr("normal_shape"))]

    def output_shape(self):
        return tuple(self.attr("normal_shape"))

    def fold_of_input(self, i=0):
        return self.attr("folded_shape")[-1]

    def fold_of_output(self):
        return self.attr("folded_shape")[-1]

    def resources(self):
        bits = self.attr("depth") * self.attr("folded_shape")[-1] * self.input_dtype().bitwidth()
        return {"LUT": 20 if self.attr("depth") <= 32 else 40, "mem_bits": bits}

    def step_layout(self):
        """Step k reads beat k and writes beat k."""
        return self.one_to_one_layout()

    def execute(self, inputs):
        return [inputs[0]]
