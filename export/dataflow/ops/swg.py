"""ConvolutionInputGenerator (sliding-window generator): streams each kh x kw window of an unpadded NHWC
feature map as one vector in (kh, kw, C) order, C innermost -- the rows of the MVAU's weight matrix. With
``depthwise=1`` it feeds a Pool. SIMD channels are moved per cycle; with ``parallel_window=1`` (FINN's RTL SWG
"parallel" style, which needs SIMD = IFMChannels and depthwise=0) a whole kh*kw*C window leaves per cycle."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from onebit.errors import UnsupportedError
from onebit.export.dataflow.base import HWOp, ceil_div, frames
from onebit.export.dataflow.layout import StepLayout, steps


@dataclass(frozen=True)
class RowPlan:
    """A default-style frame, in steps: ``fill`` (reading only), then per output row ``row`` steps of which the
    first ``row_writes`` write, reading ``takes[r]`` beats from the row's first step; ``per_row`` beats are the
    ``Stride`` input rows a row reads (the last row reads what is left); ``tail`` idle steps end the frame."""

    fill: int
    row: int
    row_writes: int
    per_row: int
    takes: tuple[int, ...]
    tail: int


class ConvolutionInputGenerator(HWOp):
    op_type = "ConvolutionInputGenerator"
    attrs = {
        "ConvKernelDim": ("ints", True, []), "IFMChannels": ("i", True, 0), "IFMDim": ("ints", True, []),
        "OFMDim": ("ints", True, []), "SIMD": ("i", True, 1), "Stride": ("ints", True, [1, 1]),
        "Dilation": ("ints", True, [1, 1]), "inputDataType": ("s", True, ""), "outputDataType": ("s", True, ""),
        "depthwise": ("i", False, 0), "ram_style": ("s", False, "distributed"), "parallel_window": ("i", False, 0),
        "is1D": ("i", False, 0), "dynamic_mode": ("i", False, 0),
    }

    positive = ("ConvKernelDim", "IFMChannels", "IFMDim", "OFMDim", "SIMD", "Stride", "Dilation")
    lengths = {"ConvKernelDim": 2, "IFMDim": 2, "OFMDim": 2, "Stride": 2, "Dilation": 2}
    divides = {"SIMD": "IFMChannels"}

    def check_rules(self):
        for flag in ("depthwise", "parallel_window"):
            if self.attr(flag) not in (0, 1):
                self.fail(f"{flag} {self.attr(flag)}; expected 0 or 1")
        dims = zip(self.attr("IFMDim"), self.attr("ConvKernelDim"), self.attr("Stride"), self.attr("Dilation"))
        expected = [(n - d * (k - 1) - 1) // s + 1 for n, k, s, d in dims]
        if list(self.attr("OFMDim")) != expected or min(expected) < 1:
            self.fail(f"OFMDim {list(self.attr('OFMDim'))} does not follow from IFMDim {list(self.attr('IFMDim'))}, "
                      f"ConvKernelDim {list(self.attr('ConvKernelDim'))}, Stride {list(self.attr('Stride'))} and "
                      f"Dilation {list(self.attr('Dilation'))}; expected {expected} (no padding)")
        if self.attr("parallel_window") and (self.attr("depthwise") or self.attr("SIMD") != self.attr("IFMChannels")):
            self.fail("parallel_window needs SIMD = IFMChannels and depthwise 0")

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

    def streaming(self) -> bool:
        """1x1 kernels and parallel windows stream: one input beat per step, no line buffer to fill."""
        kh, kw = self.attr("ConvKernelDim")
        return kh == kw == 1 or bool(self.attr("parallel_window"))

    def pipeline_depth(self, model=None):
        """The default style reads its line buffer at the end of the step (a block-RAM read with a registered
        address): the beat leaves one cycle later. Streaming styles send it in the step."""
        return 0 if self.streaming() else 1

    def row_plan(self) -> RowPlan:
        """The default style's frame: the line-buffer fill, then ``OH`` output rows of ``row`` steps each (the
        slower of writing a row's windows and reading the ``Stride`` input rows the next windows need), then the
        tail; ``takes[r]`` input beats are read from the first step of row r (the last row reads what is left).
        Depthwise windows (feeding a Pool) are replayed once per channel fold, FINN+'s RTL SWG's extra steps."""
        kh, kw = self.attr("ConvKernelDim")
        h, w = self.attr("IFMDim")
        oh, ow = self.attr("OFMDim")
        sh, sw = self.attr("Stride")
        cf = self.attr("IFMChannels") // self.attr("SIMD")
        fill = self.buffer_depth()
        row = max(ow * kh * kw * cf, sw * w * cf)
        tail = 0
        if self.attr("depthwise"):
            row += ow * (sw - 1) * (cf - 1)
            tail = (sh - 1) * w * cf
        per_row = sh * w * cf
        takes, left = [], h * w * cf - fill
        for r in range(oh):
            takes.append(min(per_row, left) if r < oh - 1 else left)
            left -= takes[-1]
        return RowPlan(fill, row, ow * kh * kw * cf, per_row, tuple(takes), tail)

    def step_layout(self):
        """FINN+'s ConvolutionInputGenerator_rtl. Streaming (1x1 kernels, ``parallel_window``): step k reads beat k
        and writes every output beat whose last input it is; 2 extra steps per frame. Default style
        (:meth:`row_plan`): ``fill`` steps that only read, then per output row its windows are written from the
        row's first step and the beats completing the next windows are read from that step too, in parallel (a
        window never waits for a beat read later in its own row, because kernel >= stride). (FINN+ has a separate
        1-D formula for maps with H or W = 1; onebit keeps the 2-D one there, which is not exact for such maps.)"""
        kh, kw = self.attr("ConvKernelDim")
        h, w = self.attr("IFMDim")
        oh, ow = self.attr("OFMDim")
        sh, sw = self.attr("Stride")
        dh, dw = self.attr("Dilation")
        cf = self.attr("IFMChannels") // self.attr("SIMD")
        n_in = h * w * cf
        if self.streaming():
            def streamed():
                last = ((steps(oh)[:, None] * sh + (kh - 1) * dh) * w + steps(ow)[None] * sw + (kw - 1) * dw)
                if self.output_beats() // (oh * ow) == cf:  # 1x1 default style: a window is cf beats
                    return [steps(n_in)], (last[..., None] * cf + steps(cf)).ravel()
                return [steps(n_in)], (last * cf + cf - 1).ravel()
            return StepLayout(n_in + 2, streamed)
        plan = self.row_plan()

        def positions():
            reads = [steps(plan.fill)]
            for r, take in enumerate(plan.takes):
                if take > plan.row:  # more rows to read than the row period holds (unequal strides)
                    raise UnsupportedError(f"node {self.name} (ConvolutionInputGenerator): stride {sh}x{sw} reads "
                                           f"more beats per output row than the row period holds; not modelled")
                if take:
                    reads.append(steps(take, plan.fill + r * plan.row))
            writes = (plan.fill + steps(oh)[:, None] * plan.row + steps(plan.row_writes)[None]).ravel()
            return [np.concatenate(reads)], writes
        return StepLayout(plan.fill + oh * plan.row + plan.tail, positions)

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
