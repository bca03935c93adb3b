"""Brevitas -> QONNX export with one fix to Brevitas' handlers.

Brevitas exports every 1-bit activation quantizer as ``BipolarQuant`` (values +-scale) and refuses a zero
point on it. That is right for signed binary codes, but a 1-bit *unsigned* code ({0, s}: bn-relu with
``--abits 1``) or one with a zero point ({-1, 0}: shifted ReLU with ``--abits 1``) would be exported wrong.
QONNX's ``Quant`` op handles such codes exactly, so onebit exports them as ``Quant``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from brevitas.export.onnx.qonnx.function import BrevitasQuantOp
from brevitas.export.onnx.qonnx.handler import BrevitasActQuantProxyHandler
from brevitas.export.onnx.qonnx.manager import QONNXDynamoManager, QONNXManager


class ActQuantHandler(BrevitasActQuantProxyHandler):
    """Brevitas' activation handler, but only signed, zero-point-free 1-bit codes become ``BipolarQuant``."""

    def validate(self, module):
        assert not module.is_groupwise, "Export with Per Group quantization not supported"

    def prepare_for_export(self, module):
        super().prepare_for_export(module)
        if module.is_quant_enabled:
            kw = self.symbolic_kwargs
            bipolar = int(kw["bit_width"]) == 1 and kw["signed"] and float(kw["zero_point"]) == 0.0
            if not bipolar:
                self.quant_op = BrevitasQuantOp


def _with_fixed_handler(handlers):
    return [ActQuantHandler if h is BrevitasActQuantProxyHandler else h for h in handlers]


class OnebitQONNXManager(QONNXManager):
    handlers = _with_fixed_handler(QONNXManager.handlers)


class OnebitQONNXDynamoManager(QONNXDynamoManager):
    handlers = _with_fixed_handler(QONNXDynamoManager.handlers)


def export_qonnx(model: torch.nn.Module, example: torch.Tensor, path: str | Path):
    """Export ``model`` (in eval mode) to a QONNX file at ``path``; returns the ONNX ModelProto."""
    model.eval()
    return OnebitQONNXDynamoManager.export(model, example, export_path=str(path), dynamo=True)
