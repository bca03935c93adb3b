"""FMPadding -> ``onebit_fmpadding``: one step per output beat, reading inside the image, zeros around it."""

from __future__ import annotations

from onebit.errors import UnsupportedError
from onebit.hw.layers.base import RTLLayer


class FMPaddingRTL(RTLLayer):
    module = "onebit_fmpadding"
    files = ("onebit_fmpadding.v",)

    def params(self):
        op = self.op
        dt = op.input_dtype()
        if dt.name == "BIPOLAR":
            raise UnsupportedError(f"node {self.name} (FMPadding): BIPOLAR input; its padding value 0 has no "
                                   f"BIPOLAR code")
        h, w = op.attr("ImgDim")
        t, l, b, r = op.attr("Padding")
        return {"BW": op.attr("SIMD") * dt.bitwidth(), "CF": op.attr("NumChannels") // op.attr("SIMD"), "H": h, "W": w,
                "T": t, "L": l, "B": b, "R": r}
