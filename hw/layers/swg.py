"""ConvolutionInputGenerator -> ``onebit_swg`` (default style: a circular line buffer) or ``onebit_swg_stream``
(1x1 kernels and parallel windows: a shift register), each running the op's step layout (its ``row_plan``)."""

from __future__ import annotations

from functools import cached_property

import numpy as np

from onebit.errors import UnsupportedError
from onebit.hw.layers.base import RTLLayer


class SWGRTL(RTLLayer):
    files = ("onebit_swg.v",)

    @property
    def module(self) -> str:
        return "onebit_swg_stream" if self.op.streaming() else "onebit_swg"

    def _check(self):
        op = self.op
        (kh, kw), (dh, dw) = op.attr("ConvKernelDim"), op.attr("Dilation")
        if (kh > 1 and dh != 1) or (kw > 1 and dw != 1):
            raise UnsupportedError(f"node {self.name} (ConvolutionInputGenerator): dilation {dh}x{dw}; the RTL "
                                   f"has dilation 1 only")
        if kh * kw > 1 and op.attr("parallel_window") and op.attr("SIMD") != op.attr("IFMChannels"):
            raise UnsupportedError(f"node {self.name} (ConvolutionInputGenerator): parallel_window=1 with SIMD "
                                   f"{op.attr('SIMD')} < IFMChannels {op.attr('IFMChannels')}")

    def params(self):
        self._check()
        return dict(self._params)

    @cached_property
    def _params(self) -> dict:
        op = self.op
        kh, kw = op.attr("ConvKernelDim")
        h, w = op.attr("IFMDim")
        oh, ow = op.attr("OFMDim")
        sh, sw = op.attr("Stride")
        cf = op.attr("IFMChannels") // op.attr("SIMD")
        bw = op.attr("SIMD") * op.input_dtype().bitwidth()
        if op.streaming():
            return {"BW": bw, "CF": cf, "H": h, "W": w, "KH": kh, "KW": kw, "SH": sh, "SW": sw, "OH": oh, "OW": ow}
        plan = op.row_plan()
        depth = self._buffer_depth(plan.fill, plan.per_row, plan.takes)
        return {"BW": bw, "KWCF": kw * cf, "KH": kh, "OW": ow, "OH": oh, "FILL": plan.fill, "ROW": plan.row,
                "ROWW": plan.row_writes, "TAKE": plan.takes[0], "TAKE_LAST": plan.takes[-1], "TAIL": plan.tail,
                "D": depth, "TAPROW_STEP": w * cf % depth, "WIN_STEP": sw * cf % depth, "ROW_STEP": plan.per_row % depth}

    def _buffer_depth(self, fill: int, per_row: int, takes: tuple[int, ...]) -> int:
        """The circular buffer's beats: for every write, the beats read before its step minus the index of the
        beat it sends (that beat's slot must not yet be reused). Raises if a window needs a beat not yet read."""
        op = self.op
        kh, kw = op.attr("ConvKernelDim")
        w, (ow, sw) = op.attr("IFMDim")[1], (op.attr("OFMDim")[1], op.attr("Stride")[1])
        cf = op.attr("IFMChannels") // op.attr("SIMD")
        x, i, j, f = np.meshgrid(np.arange(ow), np.arange(kh), np.arange(kw), np.arange(cf), indexing="ij")
        need = (((i * w + x * sw + j) * cf + f)).ravel()  # relative to the output row's first input row
        step = np.arange(len(need))
        depth, base, cases = 1, fill, set()
        for r, take in enumerate(takes):
            cases.add((base - r * per_row, take))  # rows differ only in these
            base += take
        for offset, take in cases:
            have = offset + np.minimum(step, take)
            if np.any(need >= have):
                raise UnsupportedError(f"node {self.name} (ConvolutionInputGenerator): the simulator's step layout "
                                       f"sends a window beat no later than the step that reads it (stride > kernel)")
            depth = max(depth, int((have - need).max()))
        return depth
