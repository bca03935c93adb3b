"""MVAU -> ``onebit_mvau``: 1-bit BIPOLAR or BINARY weights (PE x SIMD adds per step), or 2- to 4-bit integer
weights as bit planes (k times the adds, still no multiplier); optional thresholds."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np
from qonnx.core.datatype import DataType

from onebit.errors import UnsupportedError
from onebit.hw.encode import signed_bits
from onebit.hw.layers.base import RTLLayer, write_mem
from onebit.hw.layers.thresholds import threshold_params, write_threshold_memories

WEIGHT_VALUES = {"BIPOLAR": {-1, 1}, "BINARY": {0, 1}}
#: k-bit weight types of ``onebit_mvau`` (TERNARY as 2-bit two's complement)
KBIT_WEIGHTS = ("TERNARY", *(f"{s}INT{k}" for s in ("", "U") for k in (2, 3, 4)))
FILES = ("onebit_thresh.v", "onebit_delay.v")
#: block-RAM shapes (depth -> width) of an 18-kbit ECP5 DP16KD: a weight memory of that depth is split into
#: columns this wide, one block each, so no deep memory is stacked behind a multiplexer
BRAM_COLUMNS = ((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1))


def weight_column_bits(depth: int) -> int:
    """Width of each weight-memory column for a memory of ``depth`` words."""
    return next((w for d, w in BRAM_COLUMNS if depth <= d), 1)


def weight_values(wdt: str) -> set[int]:
    """The values a weight of type ``wdt`` (one the RTL takes) may have."""
    if wdt in WEIGHT_VALUES:
        return WEIGHT_VALUES[wdt]
    dt = DataType[wdt]
    return set(range(int(dt.min()), int(dt.max()) + 1))


class MVAURTL(RTLLayer):
    @property
    def wbits(self) -> int:
        """Bits per weight in the RTL: 1 (BIPOLAR, BINARY) or 2 to 4."""
        return 1 if self.op.attr_dtype("weightDataType").name in WEIGHT_VALUES else \
            self.op.attr_dtype("weightDataType").bitwidth()

    module = "onebit_mvau"
    files = ("onebit_mvau.v", *FILES)

    @cached_property
    def weights(self) -> np.ndarray:
        """The (MW, MH) weight matrix, checked to be of the node's weight type, one the RTL takes."""
        op = self.op
        wdt = op.attr_dtype("weightDataType").name
        w = self.init(1)
        if (wdt not in WEIGHT_VALUES and wdt not in KBIT_WEIGHTS) or not op.input_dtype().is_integer():
            raise UnsupportedError(f"node {self.name}: MVAU with {wdt} weights and {op.input_dtype().name} inputs; "
                                   f"the RTL takes BIPOLAR, BINARY, {', '.join(KBIT_WEIGHTS)} weights and "
                                   f"integer inputs")
        values = weight_values(wdt)
        if w.shape != (op.attr("MW"), op.attr("MH")) or not set(np.unique(w).tolist()) <= values:
            raise UnsupportedError(f"node {self.name}: its weights are not a ({op.attr('MW')}, {op.attr('MH')}) matrix "
                                   f"of {wdt} values {min(values)}..{max(values)}")
        return w.astype(np.int64)

    @cached_property
    def sum_range(self) -> tuple[int, int]:
        """The exact bounds of every output sum over the input type's range, for these weights (partial sums
        stay within them too: every product's range contains 0)."""
        idt = self.op.input_dtype()
        w = self.weights
        a, b = w * int(idt.min()), w * int(idt.max())
        return int(np.minimum(a, b).sum(0).min()), int(np.maximum(a, b).sum(0).max())

    def _thr(self) -> dict:
        lo, hi = self.sum_range
        return threshold_params(self.init(2), self.op.attr("MH"), lo, hi)

    def params(self):
        op = self.op
        pe, simd = op.attr("PE"), op.attr("SIMD")
        idt, odt = op.input_dtype(), op.output_dtype()
        wdt = op.attr_dtype("weightDataType")
        weights = {"W_BIPOLAR": int(wdt.name == "BIPOLAR")} if self.wbits == 1 else \
            {"WBITS": self.wbits, "W_SIGNED": int(wdt.signed())}
        p = {"PE": pe, "SIMD": simd, "NF": op.attr("MH") // pe, "SF": op.attr("MW") // simd, "IW": idt.bitwidth(),
             "IN_SIGNED": int(idt.signed()), "IN_BIPOLAR": int(idt.name == "BIPOLAR"),
             **weights, "SW": max(2, signed_bits(*self.sum_range)),
             "THRESH": int(op.has_thresholds()), "OB": odt.bitwidth(), "TREE_STAGES": op.tree_stages(),
             "WG": self._column_bits(), "WMEM": self.mem_prefix("w")}
        if self._minus_counts():
            p["CMEM"] = self.mem_prefix("c")
        if op.has_thresholds():
            t = self._thr()
            p.update(TW=t["TW"], STAGES=t["stages"], SHARED=t["shared"], OUT_BIAS=0 if odt.name == "BIPOLAR" else op.attr("ActVal"),
                     TMEM=self.mem_prefix("t"))
        return p

    def _minus_counts(self) -> bool:
        """+1/-1 weights on inputs other than BIPOLAR: the RTL sums x or ~x = -x - 1 and starts each output's
        accumulator from the count of its -1 weights (``minus_counts``)."""
        op = self.op
        return self.wbits == 1 and op.attr_dtype("weightDataType").name == "BIPOLAR" and \
            op.input_dtype().name != "BIPOLAR"

    def minus_counts(self) -> np.ndarray:
        """(NF, PE): the number of -1 weights of output channel nf*PE + p."""
        op = self.op
        return (self.weights < 0).sum(0).reshape(op.attr("MH") // op.attr("PE"), op.attr("PE"))

    def _column_bits(self) -> int:
        op = self.op
        return weight_column_bits(op.attr("MH") // op.attr("PE") * (op.attr("MW") // op.attr("SIMD")))

    def weight_words(self) -> list[int]:
        """The weight memory's words, step nf*SF + sf: bit b*PE*SIMD + p*SIMD + s is bit b of the code of
        W[sf*SIMD + s, nf*PE + p] (1-bit: w > 0; k-bit: two's complement)."""
        op = self.op
        pe, simd = op.attr("PE"), op.attr("SIMD")
        nf, sf = op.attr("MH") // pe, op.attr("MW") // simd
        k = self.wbits
        codes = (self.weights > 0).astype(np.int64) if k == 1 else self.weights & ((1 << k) - 1)
        lanes = codes.reshape(sf, simd, nf, pe).transpose(2, 0, 3, 1).reshape(nf * sf, pe * simd)
        bits = np.concatenate([(lanes >> b) & 1 for b in range(k)], axis=1)
        return [int("".join("1" if b else "0" for b in row[::-1]), 2) for row in bits]

    def write_memories(self, memdir: Path):
        op = self.op
        pe, simd = op.attr("PE"), op.attr("SIMD")
        width, group = pe * simd * self.wbits, self._column_bits()  # not params(): it rebuilds the thresholds
        words = self.weight_words()
        name = Path(self.mem_prefix("w")).name
        files = []
        for g, lo in enumerate(range(0, width, group)):
            bits = min(group, width - lo)
            files.append(write_mem(memdir / f"{name}_g{g:03d}.mem", [(w >> lo) & ((1 << bits) - 1) for w in words],
                                   bits))
        if self._minus_counts():
            sw = max(2, signed_bits(*self.sum_range))
            words = [sum(int(c) << (p * sw) for p, c in enumerate(row)) for row in self.minus_counts()]
            files.append(write_mem(memdir / f"{Path(self.mem_prefix('c')).name}.mem", words, pe * sw))
        if op.has_thresholds():
            t = self._thr()
            files += write_threshold_memories(memdir, self.mem_prefix("t"), t["table"], pe, t["stages"], t["TW"])
        return files
