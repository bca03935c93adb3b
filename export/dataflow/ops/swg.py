"""ConvolutionInputGenerator (sliding-window generator): streams each kh x kw window of an unpadded NHWC
feature map as one vector in (kh, kw, C) order, C innermost -- the rows of the MVAU's weight matrix. With
``depthwise=1`` it feeds a Pool. SIMD channels are moved per cycle; with ``parallel_window=1`` (FINN's RTL SWG
"parallel" style, which needs SIMD = IFMChannels and depthwise=0) a whole kh*kw*C window leaves per cycle."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from onebit.export.dataflow.base import HWOp, ceil_div, frames


class ConvolutionInputGenerator(HWOp):
    op_type = "ConvolutionInputGenerator"
    attrs = {
        "ConvKernelDim": ("ints", True, []), "IFMChannels": ("i", True, 0), "IFMDim": ("ints", True, []),
        "OFMDim": ("ints", True, []), "SIMD": ("i", True, 1), "Stride": ("ints", True, [1, 1]),
        "Dilation": ("ints", True, [1, 1]), "inputDataType": ("s", True, ""), "outputDataType": ("s", True, ""),
        "depthwise": ("i", False, 0), "ram_style": ("s", False, "distributed"), "parallel_window": ("i", False, 0),
        "is1D": ("i", False, 0), "dynamic_mode": ("i", False, 0),
    }

    def input_shapes(self):
        h, w = self.attr("IFMDim")
        return [(1, h, w, self.attr("IFMChannels"))]

    def output_shape(self):
        oh, ow = self.attr("OFMDim")
        kh, kw = self.attr("ConvKernelDim")
        return (1, oh, ow, kh * kw * self.attr("IFMChannels"))

    def fold_of_input(self, i=0):
        return self.attr("SIMD")

    def fold_of_output(self):
        if self.attr("parallel_window"):
            kh, kw = self.attr("ConvKernelDim")
            return kh * kw * self.attr("SIMD")
        return self.attr("SIMD")

    def folding(self):
        return {"SIMD": self.attr("IFMChannels")}

    def buffer_depth(self) -> int:
        """Beats the line buffer holds: (kh-1) full rows plus kw pixels, in units of C/SIMD."""
        kh, kw = self.attr("ConvKernelDim")
        dh, dw = self.attr("Dilation")
        w = self.attr("IFMDim")[1]
        cf = self.attr("IFMChannels") // self.attr("SIMD")
        return ((kh - 1) * dh * w + (kw - 1) * dw + 1) * cf

    def exp_cycles(self):
        """FINN+'s ConvolutionInputGenerator_rtl model: the 'parallel' style (whole windows out, or 1x1
        kernels) reads one input beat per cycle; the 'default' style is bound by the slower of writing a
        window row and reading ``stride`` input rows, plus the line-buffer fill; depthwise windows (feeding
        a Pool) are replayed once per channel fold. (FINN+ has a separate 1-D formula for maps with H or
        W = 1; onebit keeps the 2-D one there, which is not exact for such degenerate maps.)"""
        kh, kw = self.attr("ConvKernelDim")
        h, w = self.attr("IFMDim")
        oh, ow = self.attr("OFMDim")
        sh, sw = self.attr("Stride")
        cf = self.attr("IFMChannels") // self.attr("SIMD")
        depthwise = bool(self.attr("depthwise"))
        if kh == kw == 1 or self.attr("parallel_window"):  # one input beat per cycle
            return h * w * cf + 2
        per_row = max(ow * kw * kh * cf, sw * w * cf)
        if depthwise:
            per_row += ow * (sw - 1) * (cf - 1)
        cycles = self.buffer_depth() + oh * per_row
        if depthwise:
            cycles += (sh - 1) * w * cf
        return int(cycles)

    def resources(self):
        bits = self.attr("SIMD") * self.input_dtype().bitwidth()
        depth = self.buffer_depth()
        lut = 300 + bits * ceil_div(depth, 38) // 4
        if self.attr("parallel_window"):  # the window is read out in parallel: one register/mux per output bit
            lut += self.fold_of_output() * self.output_dtype().bitwidth()
        return {"LUT": lut, "mem_bits": depth * bits}

    def execute(self, inputs):
        x = frames(inputs[0], self.input_shapes()[0])
        kh, kw = self.attr("ConvKernelDim")
        sh, sw = self.attr("Stride")
        dh, dw = self.attr("Dilation")
        oh, ow = self.attr("OFMDim")
        win = sliding_window_view(x, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), axis=(1, 2))  # (N, H', W', C, ., .)
        win = win[:, : sh * (oh - 1) + 1 : sh, : sw * (ow - 1) + 1 : sw, :, ::dh, ::dw]  # (N, OH, OW, C, kh, kw)
        # one copy into (N, OH, OW, kh, kw, C): several times faster than stacking the kh*kw shifted views
        return [win.transpose(0, 1, 2, 4, 5, 3).reshape(x.shape[0], oh, ow, -1)]
