"""Thresholding: per-channel multi-threshold activation ``y = #{t : x >= t} + ActVal`` (BIPOLAR: ``2y - 1``).
Quantizers that follow no matrix product (the input BN, the residual stream's requantization) become this."""

from __future__ import annotations


from onebit.export.dataflow.base import HWOp, multithreshold, threshold_bits


class Thresholding(HWOp):
    op_type = "Thresholding"
    attrs = {
        "PE": ("i", True, 1), "NumChannels": ("i", True, 0), "numSteps": ("i", True, 1),
        "inputDataType": ("s", True, ""), "weightDataType": ("s", True, ""), "outputDataType": ("s", True, ""),
        "numInputVectors": ("ints", False, [1]), "ActVal": ("i", False, 0),
        "runtime_writeable_weights": ("i", False, 0),
    }

    positive = ("PE", "NumChannels", "numSteps", "numInputVectors")
    divides = {"PE": "NumChannels"}

    def input_count(self):
        return (2,)

    def check_rules(self):
        self.check_levels(self.attr("numSteps"))

    def check_params(self, model):
        c, n = self.attr("NumChannels"), self.attr("numSteps")
        t = self.param(model, 1, "thresholds", [(c, n), (1, n)])
        self.check_values(t, "thresholds", "weightDataType")

    def vecs(self):
        return list(self.attr("numInputVectors"))

    def input_shapes(self):
        return [(*self.vecs(), self.attr("NumChannels"))]

    def output_shape(self):
        return (*self.vecs(), self.attr("NumChannels"))

    def folding(self):
        return {"PE": self.attr("NumChannels")}

    def resources(self):
        tb = self.attr_dtype("weightDataType").bitwidth()
        steps, pe = self.attr("numSteps"), self.attr("PE")
        return {"LUT": int(self.input_dtype().bitwidth() * pe + pe * steps * 2), "mem_bits":
                self.attr("NumChannels") * steps * tb, "threshold_bits": self.attr("NumChannels") * steps * tb}

    def step_layout(self):
        """Step k reads beat k and writes beat k."""
        return self.one_to_one_layout()

    def threshold_steps(self, model=None) -> int:
        return int(self.attr("numSteps"))

    def pipeline_depth(self, model=None):
        """The RTL's binary search over the thresholds: one pipeline stage per output bit."""
        return threshold_bits(self.threshold_steps(model))

    def execute(self, inputs):
        x, t = inputs
        x = x.reshape(-1, *self.vecs()[1:], self.attr("NumChannels"))
        integer = self.input_dtype().is_integer()
        if self.output_dtype().name == "BIPOLAR":
            return [multithreshold(x, t, -1.0, 2.0, integer=integer)]
        return [multithreshold(x, t, float(self.attr("ActVal")), integer=integer)]
