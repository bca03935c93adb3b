"""Pool (AccPool / MaxPool) -> ``onebit_pool``: one step per input beat, per-fold accumulators."""

from __future__ import annotations

from onebit.errors import UnsupportedError
from onebit.hw.layers.base import RTLLayer

FUNCTIONS = {"AccPool": 0, "MaxPool": 1}


class PoolRTL(RTLLayer):
    module = "onebit_pool"
    files = ("onebit_pool.v",)

    def params(self):
        op = self.op
        fn = op.attr("Function")
        if fn not in FUNCTIONS:
            raise UnsupportedError(f"node {self.name} (Pool): Function {fn!r}; the RTL has AccPool and MaxPool")
        idt, odt = op.input_dtype(), op.output_dtype()
        pe = op.attr("PE")
        return {"PE": pe, "CF": op.attr("Channels") // pe, "K": op.taps(), "IB": idt.bitwidth(),
                "IN_SIGNED": int(idt.signed()), "IN_BIPOLAR": int(idt.name == "BIPOLAR"), "OB": odt.bitwidth(),
                "OUT_BIPOLAR": int(odt.name == "BIPOLAR"), "MAX": FUNCTIONS[fn]}
