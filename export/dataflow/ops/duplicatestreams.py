"""DuplicateStreams: the residual fork; copies one stream to NumOutputStreams consumers in lockstep."""

from __future__ import annotations


from onebit.export.dataflow.base import HWOp


class DuplicateStreams(HWOp):
    op_type = "DuplicateStreams"
    attrs = {
        "NumChannels": ("i", True, 0), "PE": ("i", True, 1), "NumOutputStreams": ("i", True, 2),
        "inputDataType": ("s", True, ""), "numInputVectors": ("ints", False, [1]),
    }

    positive = ("NumChannels", "PE", "NumOutputStreams", "numInputVectors")
    divides = {"PE": "NumChannels"}

    def output_count(self):
        return self.attr("NumOutputStreams")

    def output_dtype(self):
        return self.input_dtype()

    def infer_node_datatype(self, model):
        for out in self.onnx_node.output:
            model.set_tensor_datatype(out, self.output_dtype())

    def make_shape_compatible_op(self, model):
        from onnx import helper

        return helper.make_node("Split", [self.onnx_node.input[0]], list(self.onnx_node.output), axis=0)

    def input_shapes(self):
        return [(*self.attr("numInputVectors"), self.attr("NumChannels"))]

    def output_shape(self):
        return self.input_shapes()[0]

    def folding(self):
        return {"PE": self.attr("NumChannels")}

    def resources(self):
        return {"LUT": 20 + self.attr("PE") * self.input_dtype().bitwidth() // 2, "mem_bits": 0}

    def step_layout(self):
        """Step k reads beat k and writes beat k."""
        return self.one_to_one_layout()

    def execute(self, inputs):
        return [inputs[0]] * self.attr("NumOutputStreams")  # the executor never writes a tensor in place
