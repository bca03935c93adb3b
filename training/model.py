"""WRN-d-k exactly as the seeds describe (McDonnell's ``ResNetModel.py``; szagoruyko's PyTorch re-implementation).

- input: one BN with learned scale and offset on the raw image, then the first conv (16k channels, no
  activation in front of it);
- ``(d-2)/6`` pre-activation blocks per stage, stages of width 16k, 32k, 64k:
  ``add(act -> conv(stride s) -> act -> conv, shortcut)``;
- downsampling shortcut: 2x2 average pooling (szagoruyko) and the extra channels padded with zeros;
- head: act -> 1x1 conv to the classes -> global average pool -> logits / T (times a learned gain in the
  quantized shifted-ReLU nets, whose input BN then keeps scale 1 and offset 0: ``ArchConfig._resolve_scales``);
- act: ``bn-relu`` (BN without scale or offset, then ReLU) or ``srelu`` (``max(x, -1)``, no BN in the body).

Every conv, the first and the last included, is binary (``sqrt(2/fan_in) * sign(w)``) unless ``binary=False``.
With ``abits`` set, each activation becomes one k-bit code and the residual stream a ``res_bits`` signed code
that both inputs of every add share (see :mod:`onebit.training.quant`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from onebit.training import quant
from onebit.training.config import ArchConfig


class ShiftedReLU(nn.Module):
    """``max(x, -1)`` (ACIRS 2019): ``relu(x + 1) - 1``."""

    def forward(self, x):
        return torch.clamp_min(x, -1.0)


class ChannelZeroPad(nn.Module):
    """Append ``extra`` all-zero channels (the shortcut's channel increase without a 1x1 conv)."""

    def __init__(self, extra: int):
        super().__init__()
        self.extra = extra

    def forward(self, x):
        return F.pad(x, (0, 0, 0, 0, 0, self.extra)) if self.extra else x


def make_act(cfg: ArchConfig, channels: int) -> nn.Module:
    """The activation in front of a body or head conv."""
    if cfg.act == "bn-relu":
        code = quant.relu_quant(cfg.abits) if cfg.quantized else nn.ReLU()
        return nn.Sequential(nn.BatchNorm2d(channels, affine=False), code)
    return quant.srelu_quant(cfg.abits, cfg.srelu_zero_point) if cfg.quantized else ShiftedReLU()


def make_conv(cfg: ArchConfig, in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> nn.Module:
    make = quant.binary_conv if cfg.binary else quant.float_conv
    return make(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2)


class ResidualStream(nn.Module):
    """The code shared by both inputs and the output of every residual add (identity when float)."""

    def __init__(self, cfg: ArchConfig):
        super().__init__()
        self.code = quant.signed_quant(cfg.res_bits, quant.RES_RANGE) if cfg.quantized else nn.Identity()

    def forward(self, x):
        return self.code(x)


class Block(nn.Module):
    """Pre-activation residual block; ``stream`` is the network-wide residual code, shared, not owned."""

    def __init__(self, cfg: ArchConfig, in_ch: int, out_ch: int, stride: int, stream: ResidualStream):
        super().__init__()
        self.act1 = make_act(cfg, in_ch)
        self.conv1 = make_conv(cfg, in_ch, out_ch, 3, stride)
        self.act2 = make_act(cfg, out_ch)
        self.conv2 = make_conv(cfg, out_ch, out_ch, 3)
        self.pool = nn.AvgPool2d(2) if stride == 2 else None
        self.pad = ChannelZeroPad(out_ch - in_ch)
        self.__dict__["stream"] = stream  # shared module: registered once, on the network

    def forward(self, x):
        y = self.conv2(self.act2(self.conv1(self.act1(x))))
        y = self.stream(y)
        shortcut = x
        if self.pool is not None:
            shortcut = self.stream(self.pool(shortcut))
        shortcut = self.pad(shortcut)
        return self.stream(y + shortcut)


class WRN(nn.Module):
    """The 1-bit Wide ResNet; input is the image as ``pixel / 255`` in NCHW float."""

    def __init__(self, cfg: ArchConfig):
        super().__init__()
        self.cfg = cfg
        w1, w2, w3 = cfg.widths
        self.image_code = quant.image_quant() if cfg.quantized else nn.Identity()
        self.input_bn = nn.BatchNorm2d(cfg.in_channels, affine=True)
        self.input_bn.weight.requires_grad_(cfg.input_bn_learned)
        self.input_bn.bias.requires_grad_(cfg.input_bn_learned)
        self.input_code = (quant.signed_quant(quant.INPUT_BITS, quant.INPUT_RANGE)
                           if cfg.quantized else nn.Identity())
        self.conv0 = make_conv(cfg, cfg.in_channels, w1, 3)
        self.stream = ResidualStream(cfg)
        blocks, in_ch = [], w1
        for stage, out_ch in enumerate((w1, w2, w3)):
            for i in range(cfg.blocks_per_stage):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(Block(cfg, in_ch, out_ch, stride, self.stream))
                in_ch = out_ch
        self.blocks = nn.Sequential(*blocks)
        self.head_act = make_act(cfg, w3)
        self.head_conv = make_conv(cfg, w3, cfg.num_classes, 1)
        self.inv_temperature = 1.0 / cfg.logit_temperature
        self.logit_gain = nn.Parameter(torch.ones(1)) if cfg.logit_gain else None
        self.reset_parameters()

    def reset_parameters(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # QuantConv2d included; He-normal as in McDonnell's Keras code
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")

    def features(self, x):
        x = self.input_code(self.input_bn(self.image_code(x)))
        x = self.stream(self.conv0(x))
        return self.blocks(x)

    def forward(self, x):
        x = self.head_conv(self.head_act(self.features(x)))
        x = x.mean(dim=(2, 3)) * self.inv_temperature
        return x if self.logit_gain is None else x * self.logit_gain

    def binary_convs(self) -> list[tuple[str, nn.Module]]:
        """The convs whose weights deploy as one bit each (empty for full-precision weights)."""
        if not self.cfg.binary:
            return []
        return [(n, m) for n, m in self.named_modules() if isinstance(m, nn.Conv2d)]


def build_model(cfg: ArchConfig) -> WRN:
    return WRN(cfg)
