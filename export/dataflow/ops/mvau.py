"""MVAU: matrix-vector-activation unit. ``y = threshold(x @ W)``; with 1-bit (BIPOLAR) weights each product is
an add or a subtract. PE output channels and SIMD inputs are processed per cycle."""

from __future__ import annotations

import numpy as np

from onebit.export.dataflow.base import HWOp, ceil_div, multithreshold, threshold_bits
from onebit.export.dataflow.layout import StepLayout, steps

#: integer weights of up to this many bits are bit planes of adder trees in the RTL (``onebit_mvau``)
KBIT_PLANES = 4


class MVAU(HWOp):
    op_type = "MVAU"
    attrs = {
        "PE": ("i", True, 1), "SIMD": ("i", True, 1), "MW": ("i", True, 0), "MH": ("i", True, 0),
        "resType": ("s", False, "lut"), "ActVal": ("i", False, 0),
        "inputDataType": ("s", True, ""), "weightDataType": ("s", True, ""), "outputDataType": ("s", True, ""),
        "accDataType": ("s", False, "INT32"), "binaryXnorMode": ("i", False, 0), "noActivation": ("i", False, 0),
        "numInputVectors": ("ints", False, [1]), "mem_mode": ("s", False, "internal_decoupled"),
        "ram_style": ("s", False, "auto"), "ram_style_thresholds": ("s", False, "auto"),
        "runtime_writeable_weights": ("i", False, 0),
    }

    positive = ("PE", "SIMD", "MW", "MH", "numInputVectors")
    divides = {"PE": "MH", "SIMD": "MW"}

    def input_count(self):
        return (3,) if self.has_thresholds() else (2,)

    def check_rules(self):
        if self.attr("noActivation") not in (0, 1):
            self.fail(f"noActivation {self.attr('noActivation')}; expected 0 or 1")

    def check_params(self, model):
        mw, mh = self.attr("MW"), self.attr("MH")
        w = self.param(model, 1, "weights", [(mw, mh)])
        self.check_values(w, "weights", "weightDataType")
        if self.has_thresholds():
            t = self.param(model, 2, "thresholds", [(mh, None), (1, None)])
            self.check_levels(t.shape[1])

    def vecs(self) -> list[int]:
        return list(self.attr("numInputVectors"))

    def input_shapes(self):
        return [(*self.vecs(), self.attr("MW"))]

    def output_shape(self):
        return (*self.vecs(), self.attr("MH"))

    def fold_of_input(self, i=0):
        return self.attr("SIMD")

    def fold_of_output(self):
        return self.attr("PE")

    def has_thresholds(self) -> bool:
        return not self.attr("noActivation")

    def step_layout(self):
        """FINN's Matrix_Vector_Activate loop: per pixel NF*SF steps (NF = MH/PE neuron folds, SF = MW/SIMD
        synapse folds); the SF steps of neuron fold 0 read the input vector (later folds reuse the input
        buffer); every SF-th step writes PE outputs."""
        p = int(np.prod(self.vecs()))
        sf, nf = self.attr("MW") // self.attr("SIMD"), self.attr("MH") // self.attr("PE")

        def positions():
            base = steps(p)[:, None] * (nf * sf)
            return [(base + steps(sf)[None]).ravel()], (base + (steps(nf) * sf + sf - 1)[None]).ravel()
        return StepLayout(p * nf * sf, positions)

    def threshold_steps(self, model=None) -> int:
        """Thresholds per channel: the threshold tensor's (with ``model``), else the output type's levels - 1."""
        if model is not None and len(self.onnx_node.input) > 2:
            t = model.get_initializer(self.onnx_node.input[2])
            if t is not None:
                return int(t.shape[-1])
        return 2 ** self.output_dtype().bitwidth() - 1

    def tree_stages(self) -> int:
        """Cycles from a step to its dot product reaching the accumulator in ``onebit_mvau``: the weight read
        and the operands' two registers, balanced adder trees over SIMD inputs (L = ceil(log2 SIMD) levels)
        with a register every second level and at the root, then one register on the dot product."""
        levels = (self.attr("SIMD") - 1).bit_length()
        return ceil_div(levels, 2) + 3

    def pipeline_depth(self, model=None):
        """The adder trees' pipeline, then with thresholds the RTL's binary search: one stage per output bit."""
        thresholds = threshold_bits(self.threshold_steps(model)) if self.has_thresholds() else 0
        return self.tree_stages() + thresholds

    def folding(self):
        return {"PE": self.attr("MH"), "SIMD": self.attr("MW")}

    def weight_bits(self) -> int:
        return self.attr("MW") * self.attr("MH") * self.attr_dtype("weightDataType").bitwidth()

    def resources(self):
        """FINN-R's MVAU LUT model (as in FINN's MVAU_hls) and the weight and threshold memory in bits; weights
        of 2 to 4 bits cost what the RTL builds of them: one 1-bit adder tree per bit plane, no multiplier."""
        pe, simd = self.attr("PE"), self.attr("SIMD")
        wdt = self.attr_dtype("weightDataType")
        wb, ab = wdt.bitwidth(), self.input_dtype().bitwidth()
        acc = self.attr_dtype("accDataType").bitwidth()
        if wb == 1:  # a 1-bit weight selects add or subtract: no multiplier
            mult, adder_tree = 0, (wb + ab) * (2 * simd - 1)
        elif wb <= KBIT_PLANES and wdt.is_integer():  # bit planes, each a 1-bit adder tree, then shifted adds
            mult, adder_tree = 0, wb * (1 + ab) * (2 * simd - 1) + (wb - 1) * acc
        else:
            mult, adder_tree = simd * (2 * ceil_div(wb + ab, 6) - 1) * (wb + ab), (wb + ab) * (2 * simd - 1)
        tmem = self.attr("MH") // pe
        steps = 0
        comp = 0
        if self.has_thresholds():
            steps = 2 ** self.output_dtype().bitwidth() - 1
            comp = steps * acc
        lut = int(300 + 1.1 * pe * (mult + adder_tree + acc + comp))
        thr_bits = self.attr("MH") * steps * acc
        return {"LUT": lut, "mem_bits": self.weight_bits() + thr_bits, "weight_bits": self.weight_bits(),
                "threshold_bits": thr_bits, "wmem_depth": self.attr("MW") * self.attr("MH") // (pe * simd),
                "tmem_depth": tmem}

    def execute(self, inputs):
        x, w = inputs[0], inputs[1]
        x = x.reshape(-1, *self.vecs()[1:], self.attr("MW"))
        exact32 = self.attr("MW") * max(abs(self.input_dtype().min()), abs(self.input_dtype().max())) < 2**24
        ftype = np.float32 if exact32 else np.float64  # integer sums below 2**24 are exact in float32 BLAS
        # one 2-D product: numpy's batched matmul over (N, H, W) leading axes is ~50x slower than BLAS
        acc = x.reshape(-1, x.shape[-1]).astype(ftype, copy=False) @ w.astype(ftype, copy=False)
        acc = acc.reshape(*x.shape[:-1], w.shape[-1])
        if not self.has_thresholds():
            return [acc]
        odt = self.output_dtype()
        scale, bias = (2.0, -1.0) if odt.name == "BIPOLAR" else (1.0, float(self.attr("ActVal")))
        integer = self.input_dtype().is_integer() and self.attr_dtype("weightDataType").is_integer()
        return [multithreshold(acc, inputs[2], bias, scale, integer=integer, reuse=True)]
