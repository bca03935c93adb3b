"""The base of every RTL layer: how a dataflow op becomes an instance of a module in ``hw/rtl``.

Every module is a **step machine** that runs exactly the op's step layout (``HWOp.step_layout``), which the
simulator times too: each cycle it tries its current step; the step fires when every input it reads offers a
beat (``inK_valid``) and every output it writes has room (``outK_room``); on firing it takes the beats
(``inK_ready``), reserves output room (``outK_reserve``) and delivers the written beat ``pipeline_depth`` cycles
later (``outK_valid`` / ``outK_data``). Ports with one stream are named ``in_*`` / ``out_*``; with several,
``in0_*``, ``in1_*``, ``out0_*``...

Subclasses set ``module`` and ``files`` (the Verilog files the module needs) and implement ``params`` and, if
the layer has memories, ``write_memories``; ``onebit.hw.layers.RTL_LAYERS`` maps each op class to its layer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from onebit.errors import UnsupportedError
from onebit.export.dataflow.base import HWOp
from onebit.hw.idents import verilog_ident

RTL_DIR = Path(__file__).resolve().parent.parent / "rtl"


class RTLLayer(ABC):
    module = ""
    files: tuple[str, ...] = ()

    def __init__(self, op: HWOp, model: ModelWrapper, ident: str | None = None):
        self.op = op
        self.model = model
        #: the instance's Verilog identifier, also naming its memory files; ``generate`` hands every layer of a
        #: graph a distinct one (``onebit.hw.idents``), never the raw node name
        self.ident = ident or verilog_ident(op.name)

    @property
    def name(self) -> str:
        return self.op.name

    def n_inputs(self) -> int:
        return len(self.op.stream_inputs())

    def n_outputs(self) -> int:
        return 1

    def in_width(self, i: int = 0) -> int:
        return int(self.op.instream_width(i))

    def out_width(self) -> int:
        return int(self.op.outstream_width())

    def pipeline_depth(self) -> int:
        return self.op.pipeline_depth(self.model)

    @abstractmethod
    def params(self) -> dict:
        """Verilog parameters (ints, or strings for memory file prefixes)."""

    def write_memories(self, memdir: Path) -> list[Path]:
        """Write the layer's memory-init files into ``memdir``; returns them."""
        return []

    def init(self, k: int = 1) -> np.ndarray:
        """The op's k-th input as a parameter tensor (weights, thresholds)."""
        t = self.model.get_initializer(self.op.onnx_node.input[k])
        if t is None:
            raise UnsupportedError(f"node {self.name}: input {k} ({self.op.onnx_node.input[k]}) is not a constant; "
                                   f"the RTL needs its weights/thresholds in the graph")
        return np.asarray(t)

    def mem_prefix(self, what: str) -> str:
        """``mem/<ident>_<what>``: distinct identifiers give distinct files (the suffixes after ``what`` are fixed)."""
        return f"mem/{self.ident}_{what}"



def write_mem(path: Path, words: list[int], bits: int) -> Path:
    """A $readmemh file: one word per line, ``bits`` wide (two's complement for negatives)."""
    digits = max(1, -(-bits // 4))
    mask = (1 << bits) - 1
    path.write_text("".join(format(int(w) & mask, f"0{digits}x") + "\n" for w in words))
    return path
