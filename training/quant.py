"""Brevitas quantizers for the 1-bit WRN.

Weights: McDonnell's ``sqrt(2 / fan_in) * sign(w)`` -- a binary quantizer with a constant, per-layer scale
equal to the He-init standard deviation. Brevitas' ``SignedBinaryWeightPerTensorConst`` clamps the latent
weight to ``[-scale, scale]`` in place, which zeroes the gradient outside that range; the seeds hand the
gradient to the latent weight unchanged, so we swap in the unclamped ``BinaryQuant`` (``sign`` with a
straight-through gradient, ``sign(0) = +1``).

Activations (hardware variants): unsigned k-bit with a constant power-of-two step, so that every scale in the
network is a compile-time constant and the residual stream has one scale everywhere.

- ``bn-relu``: ``Quant(uint k)`` after the affine-free BN; quantizing to ``[0, (2^k-1) s]`` is the ReLU.
- ``srelu``: ``max(x, -1)`` quantized as one uint k-bit quantizer with integer zero point ``z = 1/s``:
  ``y = s * (clamp(round(x/s + z), 0, 2^k-1) - z)`` (float32, as Brevitas and QONNX compute it), whose floor ``-z*s = -1`` is the shifted ReLU.
- the residual stream: signed ``res_bits`` with step ``RES_RANGE / 2^(res_bits-1)``, shared by both inputs
  of every residual add, so the add is an integer add.
- the input: the raw uint8 image (``pixel / 255``), and after the input BN a signed 8-bit code.
"""

from __future__ import annotations

import math

import torch
from brevitas.core.quant.binary import BinaryQuant
from brevitas.core.utils import StatelessBuffer
from brevitas.inject import ExtendedInjector
from brevitas.inject.enum import RestrictValueType, ScalingImplType, ScalingPerOutputType
from brevitas.jit import ScriptModule, script_method
from brevitas.nn import QuantConv2d, QuantIdentity
from brevitas.quant.base import IntQuant, UintQuant
from brevitas.quant.binary import SignedBinaryWeightPerTensorConst
from brevitas.quant.solver import ActQuantSolver
from brevitas.quant_tensor import QuantTensor
from torch import Tensor, nn

from onebit.errors import ConfigError
from onebit.training.config import LEGACY_SRELU_ZERO_POINT, SRELU_ZERO_POINT  # noqa: F401 (re-exported)

#: Step of the bn-relu activation code for k bits (a power of two; max value (2^k - 1) * step).
RELU_STEP = {1: 1.0, 2: 0.5, 3: 0.5, 4: 0.25, 5: 0.125, 6: 2**-4, 7: 2**-5, 8: 2**-6}
#: The residual stream covers [-RES_RANGE, RES_RANGE) whatever its bit width.
RES_RANGE = 8.0
#: The input BN output covers [-INPUT_RANGE, INPUT_RANGE) with INPUT_BITS signed bits.
INPUT_RANGE = 8.0
INPUT_BITS = 8


def he_scale(fan_in: int) -> float:
    """McDonnell's constant weight scale: the He-init standard deviation ``sqrt(2 / fan_in)``."""
    return math.sqrt(2.0 / fan_in)


class _ScaledSignSTE(torch.autograd.Function):
    """Forward ``scale * sign(w)`` (``sign(0) = +1``); backward hands the gradient to ``w`` unchanged."""

    @staticmethod
    def forward(ctx, w: Tensor, scale: Tensor) -> Tensor:
        scale = scale.to(w.dtype)
        return torch.where(w >= 0, scale, -scale)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad, None


class SeedBinaryQuant(BinaryQuant):
    """Brevitas' ``BinaryQuant`` with the seeds' gradient.

    Brevitas' ``binary_sign_ste(w) * scale`` gives ``dL/dw = scale * dL/dw_b``; McDonnell's Keras layer and
    szagoruyko's ``ForwardSign`` give ``dL/dw = dL/dw_b``. The forward values are identical.
    """

    def forward(self, x: Tensor):
        scale = self.scaling_impl(x)
        y = _ScaledSignSTE.apply(x, scale)
        return y, scale, self.zero_point(), self.bit_width()


class BinaryWeightHeConst(SignedBinaryWeightPerTensorConst):
    """``sign(w) * scaling_const`` with the seeds' straight-through gradient (set ``scaling_const`` per layer)."""

    tensor_quant = SeedBinaryQuant


class _ConstTensorScaling(ExtendedInjector):
    scaling_impl_type = ScalingImplType.CONST
    restrict_scaling_type = RestrictValueType.FP
    scaling_per_output_type = ScalingPerOutputType.TENSOR


class ConstZeroPoint(ScriptModule):
    """A constant integer zero point (Brevitas has learned or stats-based ones only)."""

    def __init__(self, zero_point_const: float) -> None:
        super().__init__()
        self.zero_point = StatelessBuffer(torch.tensor(float(zero_point_const)))

    @script_method
    def forward(self, x: Tensor, scale: Tensor, bit_width: Tensor) -> Tensor:
        return self.zero_point()


class UintConstAct(UintQuant, _ConstTensorScaling, ActQuantSolver):
    """Unsigned ``bit_width``-bit code with a constant scale ``max_val / (2^bit_width - 1)``."""


class IntConstAct(IntQuant, _ConstTensorScaling, ActQuantSolver):
    """Signed ``bit_width``-bit code with a constant scale ``max_val / 2^(bit_width - 1)``."""


class ShiftedUintConstAct(UintConstAct):
    """Unsigned code with a constant integer zero point: ``y = s * (q - zero_point_const)``."""

    zero_point_impl = ConstZeroPoint
    quantize_zero_point = True


def check_bits(bits: int, what: str) -> int:
    if not isinstance(bits, int) or not 1 <= bits <= 8:
        raise ConfigError(f"{what}: expected an integer number of bits in 1..8, got {bits!r}")
    return bits


def relu_quant(bits: int) -> QuantIdentity:
    """The bn-relu activation code: ReLU and k-bit quantization in one quantizer."""
    step = RELU_STEP[check_bits(bits, "--abits")]
    return QuantIdentity(act_quant=UintConstAct, bit_width=bits, max_val=step * (2**bits - 1),
                         return_quant_tensor=False)


def srelu_quant(bits: int, zero_point: int | None = None) -> QuantIdentity:
    """The shifted-ReLU activation code: ``max(x, -1)`` and k-bit quantization in one quantizer; its zero point
    (``1 / step``) defaults to the table's for ``bits``."""
    z = zero_point or SRELU_ZERO_POINT[check_bits(bits, "--abits")]
    return QuantIdentity(act_quant=ShiftedUintConstAct, bit_width=bits, max_val=(2**bits - 1) / z,
                         zero_point_const=float(z), return_quant_tensor=False)


def signed_quant(bits: int, value_range: float) -> QuantIdentity:
    """Signed ``bits``-bit code covering ``[-value_range, value_range)`` with a power-of-two step."""
    return QuantIdentity(act_quant=IntConstAct, bit_width=bits, min_val=-value_range, max_val=value_range,
                         return_quant_tensor=False)


def image_quant() -> QuantIdentity:
    """The raw image as its uint8 code: the model is fed ``pixel / 255``."""
    return QuantIdentity(act_quant=UintConstAct, bit_width=8, max_val=1.0, return_quant_tensor=False)


class BinaryConv2d(QuantConv2d):
    """A bias-free conv whose forward weights are ``c * sign(w)``, ``c = sqrt(2 / (k*k*in_ch))``.

    It computes ``conv(x, sign(w)) * c``: on integer-coded inputs the sum is exact and ``c`` is applied
    once, so the result does not depend on summation order. (``c`` can be rational -- fan_in 288 gives
    1/12 -- and then the order-dependent rounding of ``conv(x, c * sign(w))`` decides exact ties in the
    next quantizer.) The gradient reaching ``w`` is the seeds' straight-through one.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, padding: int = 0):
        self.he_const = he_scale(kernel * kernel * in_ch)
        super().__init__(in_ch, out_ch, kernel, stride=stride, padding=padding, bias=False,
                         weight_quant=BinaryWeightHeConst, weight_scaling_const=self.he_const,
                         return_quant_tensor=False)

    def inner_forward_impl(self, x, quant_weight, quant_bias):
        x = x.value if isinstance(x, QuantTensor) else x
        w = quant_weight.value if isinstance(quant_weight, QuantTensor) else quant_weight
        scale = quant_weight.scale if isinstance(quant_weight, QuantTensor) else self.he_const
        return self._conv_forward(x, w / scale, None) * scale


def binary_conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1, padding: int = 0) -> BinaryConv2d:
    return BinaryConv2d(in_ch, out_ch, kernel, stride=stride, padding=padding)


def float_conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1, padding: int = 0) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=padding, bias=False)
