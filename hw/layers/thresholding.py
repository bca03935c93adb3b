"""Thresholding -> ``onebit_thresholding``: one beat in and one out per step, a binary-search threshold unit."""

from __future__ import annotations

from pathlib import Path

from onebit.hw.layers.base import RTLLayer
from onebit.hw.layers.thresholds import threshold_params, write_threshold_memories


class ThresholdingRTL(RTLLayer):
    module = "onebit_thresholding"
    files = ("onebit_thresholding.v", "onebit_thresh.v", "onebit_delay.v")

    def _thr(self) -> dict:
        idt = self.op.input_dtype()
        return threshold_params(self.init(1), self.op.attr("NumChannels"), int(idt.min()), int(idt.max()))

    def params(self):
        op = self.op
        t = self._thr()
        odt = op.output_dtype()
        pe = op.attr("PE")
        return {"PE": pe, "NF": op.attr("NumChannels") // pe, "IW": op.input_dtype().bitwidth(),
                "IN_SIGNED": int(op.input_dtype().signed()), "TW": t["TW"], "STAGES": t["stages"],
                "OB": odt.bitwidth(), "OUT_BIAS": 0 if odt.name == "BIPOLAR" else op.attr("ActVal"),
                "SHARED": t["shared"], "MEM": self.mem_prefix("t")}

    def write_memories(self, memdir: Path):
        t = self._thr()
        return write_threshold_memories(memdir, self.mem_prefix("t"), t["table"], self.op.attr("PE"), t["stages"],
                                        t["TW"])
