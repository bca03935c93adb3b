"""The WRN-d-k model: structure, parameter counts, the binary conv and its gradient, the activation codes,
the integer residual stream, the shortcut and the logit temperature."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from brevitas.nn import QuantIdentity
from torch import nn

from onebit.errors import ConfigError
from onebit.training import quant
from onebit.training.config import ArchConfig, parse_arch
from onebit.training.model import Block, ShiftedReLU, build_model


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_binary(model) -> int:
    return sum(m.weight.numel() for _, m in model.binary_convs())


def convs(model: nn.Module) -> list[nn.Conv2d]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


def expected_counts(depth: int, k: int, in_ch: int, classes: int, gain: bool = False) -> tuple[int, int]:
    """(all parameters, conv weights) of WRN-depth-k, from the architecture as the seeds describe it; ``gain``:
    with the quantized shifted-ReLU nets' logit gain."""
    n = (depth - 2) // 6
    widths = (16 * k, 32 * k, 64 * k)
    conv = 3 * 3 * in_ch * widths[0]  # first conv: 3x3, in -> 16k
    c = widths[0]
    for w in widths:
        for _ in range(n):
            conv += 3 * 3 * c * w + 3 * 3 * w * w  # two 3x3 convs per block
            c = w
    conv += widths[2] * classes  # head: 1x1, 64k -> classes
    return conv + 2 * in_ch + gain, conv  # + the input BN's scale and offset


def sign_pm1(w: torch.Tensor) -> torch.Tensor:
    """sign with sign(0) = +1."""
    return torch.where(w >= 0, torch.ones_like(w), -torch.ones_like(w))


def on_grid(t: torch.Tensor, step: float) -> bool:
    q = t / step
    return bool(torch.equal(q, torch.round(q)))


# --------------------------------------------------------------------------- counts and shapes


def test_wrn_20_10_parameter_counts():
    model = build_model(parse_arch("wrn-20-10"))
    assert count_params(model) == 26_737_126
    assert count_binary(model) == 26_737_120
    assert expected_counts(20, 10, 3, 10) == (26_737_126, 26_737_120)


def test_tiny_parameter_counts_on_digits():
    model = build_model(parse_arch("tiny", in_channels=1, num_classes=10))
    assert count_params(model) == 74_515  # + the logit gain
    assert count_binary(model) == 74_512


@pytest.mark.parametrize("depth,k,in_ch,classes", [(8, 1, 1, 10), (8, 3, 3, 7), (14, 2, 3, 10),
                                                   (20, 1, 3, 100), (26, 2, 2, 5)])
@pytest.mark.parametrize("act", ["srelu", "bn-relu"])
@pytest.mark.parametrize("abits", [None, 3])
def test_wrn_d_k_counts_follow_the_architecture(depth, k, in_ch, classes, act, abits):
    total, conv = expected_counts(depth, k, in_ch, classes, gain=act == "srelu" and abits is not None)
    binary = build_model(parse_arch(f"wrn-{depth}-{k}", act=act, abits=abits, in_channels=in_ch,
                                    num_classes=classes))
    assert count_params(binary) == total
    assert count_binary(binary) == conv
    fp = build_model(parse_arch(f"wrn-{depth}-{k}", binary=False, act=act, abits=abits, in_channels=in_ch,
                                num_classes=classes))
    assert count_params(fp) == total
    assert count_binary(fp) == 0
    # every conv is bias-free; 1 first conv + 2 per block + 1 head conv
    assert len(convs(binary)) == 1 + 2 * 3 * ((depth - 2) // 6) + 1
    assert all(m.bias is None for m in convs(binary))


@pytest.mark.parametrize("arch,in_ch,size,classes", [("tiny", 1, 8, 10), ("wrn-8-2", 3, 32, 10),
                                                     ("wrn-14-1", 1, 28, 100)])
def test_shapes(arch, in_ch, size, classes):
    model = build_model(parse_arch(arch, in_channels=in_ch, num_classes=classes)).eval()
    x = torch.rand(3, in_ch, size, size)
    feats = model.features(x)
    assert feats.shape == (3, model.cfg.widths[2], size // 4, size // 4)
    assert model(x).shape == (3, classes)


@pytest.mark.parametrize("size", [30, 10])
def test_image_sizes_not_divisible_by_four_work_or_are_refused_as_config_errors(size):
    """A folder of 30x30 images must not end in a raw shape error: either the model handles the odd sizes
    at the downsampling stages (McDonnell pools with 'same' padding) or the size is refused up front."""
    try:
        model = build_model(parse_arch("tiny", in_channels=1, image_size=size)).eval()
    except ConfigError as e:
        assert "size" in str(e)
        return
    assert model(torch.rand(2, 1, size, size)).shape == (2, 10)


# --------------------------------------------------------------------------- the binary conv


@pytest.mark.parametrize("in_ch,out_ch,kernel,stride", [(1, 16, 3, 1), (16, 16, 3, 1), (32, 64, 3, 2),
                                                        (3, 8, 3, 1), (64, 10, 1, 1), (2, 5, 1, 1),
                                                        (8, 6, 1, 1), (32, 4, 1, 1)])
def test_binary_conv_forward_is_scaled_sign(in_ch, out_ch, kernel, stride):
    torch.manual_seed(in_ch * 100 + out_ch)
    conv = quant.binary_conv(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2)
    with torch.no_grad():
        conv.weight[0, 0] = 0.0  # sign(0) = +1
        conv.weight[-1, -1, 0, 0] = -0.0
    w = conv.weight.detach()
    fan_in = kernel * kernel * in_ch
    c = math.sqrt(2.0 / fan_in)
    assert conv.he_const == pytest.approx(c, rel=1e-15)
    ref_w = sign_pm1(w) * c
    assert set(torch.unique(sign_pm1(w)).tolist()) == {-1.0, 1.0}

    # integer-valued (dyadic) inputs: the integer sum is exact and the scale is applied once
    x = torch.randint(-16, 16, (4, in_ch, 9, 9)).float()
    out = conv(x)
    assert torch.equal(out, F.conv2d(x, sign_pm1(w), stride=stride, padding=kernel // 2) * torch.tensor(c))
    if math.log2(c).is_integer():  # power-of-two scale: every product is exact, so the two forms agree bit for bit
        assert torch.equal(out, F.conv2d(x, ref_w, stride=stride, padding=kernel // 2))
    torch.testing.assert_close(out, F.conv2d(x, ref_w, stride=stride, padding=kernel // 2),
                               rtol=1e-6, atol=1e-6 * out.abs().max().item())

    # random float inputs
    xf = torch.randn(4, in_ch, 9, 9)
    ref = F.conv2d(xf.double(), ref_w.double(), stride=stride, padding=kernel // 2).float()
    torch.testing.assert_close(conv(xf), ref, rtol=1e-6, atol=1e-6 * ref.abs().max().item())


@pytest.mark.parametrize("in_ch,scale", [(2, 1.0), (8, 0.5), (32, 0.25), (128, 0.125)])
def test_binary_conv_is_bit_exact_with_the_seed_formula_for_power_of_two_scales(in_ch, scale):
    """1x1 convs on 2 * 4^n channels have a power-of-two scale: every product is exact, so computing
    conv(x, sign(w)) * c or conv(x, c * sign(w)) must give the same bits on integer inputs."""
    assert math.sqrt(2.0 / in_ch) == scale
    torch.manual_seed(in_ch)
    conv = quant.binary_conv(in_ch, 12, 1)
    with torch.no_grad():
        conv.weight[:2] = 0.0
    x = torch.randint(-128, 128, (3, in_ch, 5, 5)).float()
    assert torch.equal(conv(x), F.conv2d(x, sign_pm1(conv.weight.detach()) * math.sqrt(2.0 / in_ch)))


class ForwardSign(torch.autograd.Function):
    """szagoruyko's binary-wide-resnet: forward sqrt(2/fan_in) * sign(w), backward the gradient unchanged."""

    @staticmethod
    def forward(ctx, w):
        return sign_pm1(w) * math.sqrt(2.0 / w[0].numel())

    @staticmethod
    def backward(ctx, g):
        return g


@pytest.mark.parametrize("in_ch,out_ch,kernel,magnitude", [(16, 8, 3, 1.0), (3, 16, 3, 100.0), (64, 10, 1, 100.0)])
def test_binary_conv_gradient_is_the_seeds_straight_through(in_ch, out_ch, kernel, magnitude):
    """dL/dw = dL/dw_b, unscaled, and not zeroed where |w| exceeds the scale (Brevitas' clamped STE would)."""
    torch.manual_seed(7)
    conv = quant.binary_conv(in_ch, out_ch, kernel, padding=kernel // 2)
    with torch.no_grad():
        conv.weight.mul_(magnitude)
    w_ref = conv.weight.detach().clone().requires_grad_(True)
    x = torch.randn(3, in_ch, 7, 7, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    g = torch.randn(3, out_ch, 7, 7)

    (conv(x) * g).sum().backward()
    (F.conv2d(x_ref, ForwardSign.apply(w_ref), padding=kernel // 2) * g).sum().backward()

    assert conv.weight.grad is not None
    torch.testing.assert_close(conv.weight.grad, w_ref.grad, rtol=1e-5, atol=1e-5 * w_ref.grad.abs().max().item())
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-5, atol=1e-5 * x_ref.grad.abs().max().item())
    assert (conv.weight.grad != 0).float().mean() > 0.9


def test_binary_weights_in_the_model_are_scaled_signs():
    model = build_model(parse_arch("wrn-8-1", in_channels=3))
    binary = model.binary_convs()
    assert len(binary) == len(convs(model)) == 8  # the first and the last conv included
    names = [n for n, _ in binary]
    assert names[0] == "conv0" and names[-1] == "head_conv"
    for _, conv in binary:
        assert isinstance(conv, quant.BinaryConv2d)
        qw = conv.quant_weight().value
        c = math.sqrt(2.0 / conv.weight[0].numel())
        assert torch.equal(qw, sign_pm1(conv.weight.detach()) * torch.tensor(c, dtype=torch.float32))


# --------------------------------------------------------------------------- full precision, activations


@pytest.mark.parametrize("act", ["srelu", "bn-relu"])
def test_fp_mode_uses_plain_convs_without_quantizers(act):
    model = build_model(parse_arch("wrn-8-1", binary=False, act=act, in_channels=3))
    assert model.binary_convs() == []
    assert convs(model) and all(type(m) is nn.Conv2d for m in convs(model))
    brevitas = [type(m).__name__ for m in model.modules() if type(m).__module__.startswith("brevitas")]
    assert brevitas == []
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(model.conv0(x), F.conv2d(x, model.conv0.weight, padding=1))


def test_shifted_relu_float_mode_is_max_x_minus_one():
    x = torch.tensor([-5.0, -1.5, -1.0, -0.999, -0.5, 0.0, 0.25, 3.0, 1e6, -1e6])
    assert torch.equal(ShiftedReLU()(x), torch.maximum(x, torch.tensor(-1.0)))
    assert torch.equal(ShiftedReLU()(x), F.relu(x + 1) - 1)


def test_srelu_float_model_has_shifted_relu_and_no_body_bn():
    model = build_model(parse_arch("wrn-14-1", act="srelu", in_channels=3))
    acts = [m for m in model.modules() if isinstance(m, ShiftedReLU)]
    assert len(acts) == 2 * 2 * 3 + 1
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns == [model.input_bn] and model.input_bn.affine
    seen = []
    hooks = [a.register_forward_hook(lambda m, i, o: seen.append((i[0], o))) for a in acts]
    model.eval()(torch.rand(2, 3, 16, 16))
    for h in hooks:
        h.remove()
    assert len(seen) == len(acts)
    for i, o in seen:
        assert torch.equal(o, torch.clamp_min(i, -1.0))


def test_bn_relu_float_model_has_affine_free_bn():
    model = build_model(parse_arch("wrn-8-1", act="bn-relu", in_channels=3))
    body = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d) and m is not model.input_bn]
    assert len(body) == 2 * 3 + 1
    assert all(not m.affine and m.weight is None and m.bias is None for m in body)
    assert model.input_bn.affine


@pytest.mark.parametrize("k", range(1, 9))
def test_srelu_code(k):
    z = quant.SRELU_ZERO_POINT[k]
    q = quant.srelu_quant(k)
    x = torch.cat([torch.linspace(-30, 30, 20001), torch.randn(5000) * 4])
    y = q(x)
    assert on_grid(y + 1.0, 1.0 / z)  # multiples of 1/z, shifted by the floor -1
    assert y.min().item() == -1.0
    assert y.max().item() == (2**k - 1) / z - 1
    assert torch.unique(y).numel() == 2**k
    # QONNX's Quant semantics (what the export must reproduce): round(x / s + z), the add in float32
    codes = torch.clamp(torch.round(x * z + z), 0, 2**k - 1)
    assert torch.equal(y, (codes - z) / z)
    # on the grid's interior the code is max(x, -1) rounded to the step
    inside = (x > -1) & (x < (2**k - 1) / z - 1)
    assert (y[inside] - torch.clamp_min(x[inside], -1)).abs().max() <= 0.5 / z + 1e-6


@pytest.mark.parametrize("k", range(1, 9))
def test_bn_relu_code(k):
    step = quant.RELU_STEP[k]
    assert math.log2(step).is_integer()
    q = quant.relu_quant(k)
    x = torch.cat([torch.linspace(-10, 10, 20001), torch.randn(5000) * 3])
    y = q(x)
    assert (y >= 0).all()
    assert on_grid(y, step)
    assert y.max().item() == (2**k - 1) * step
    assert torch.unique(y).numel() == 2**k
    assert torch.equal(y, step * torch.clamp(torch.round(x / step), 0, 2**k - 1))


@pytest.mark.parametrize("act", ["srelu", "bn-relu"])
@pytest.mark.parametrize("abits", [1, 4])
def test_quantized_model_feeds_integer_codes_to_every_conv(act, abits):
    model = build_model(parse_arch("wrn-8-1", act=act, abits=abits, in_channels=3)).eval()
    step = quant.RELU_STEP[abits] if act == "bn-relu" else 1.0 / quant.SRELU_ZERO_POINT[abits]
    seen = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, i[0].detach()))
             for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    torch.manual_seed(0)
    model(torch.rand(4, 3, 16, 16))
    for h in hooks:
        h.remove()
    assert len(seen) == 8
    assert on_grid(seen.pop("conv0"), quant.INPUT_RANGE / 2 ** (quant.INPUT_BITS - 1))
    for name, x in seen.items():
        assert on_grid(x, step), name
        if act == "bn-relu":
            assert (x >= 0).all() and x.max() <= (2**abits - 1) * step, name
        else:
            assert x.min() >= -1 and x.max() <= (2**abits - 1) * step - 1, name


# --------------------------------------------------------------------------- residual stream and shortcut


def trace_blocks(model, x):
    """Per block: its input, the stream calls (input, output) made while it ran, its pad's (input, output)
    and its output."""
    records, current = [], []
    hooks = []
    assert len(model.blocks) == 3 * model.cfg.blocks_per_stage
    for mod in model.blocks:
        assert isinstance(mod, Block) and mod.stream is model.stream  # one stream, shared by every add
        hooks.append(mod.register_forward_pre_hook(
            lambda m, i: current.append({"block": m, "in": i[0].detach(), "stream": [], "pad": None})))
        hooks.append(mod.register_forward_hook(lambda m, i, o: records.append({**current.pop(), "out": o.detach()})))
        hooks.append(mod.pad.register_forward_hook(
            lambda m, i, o: current[-1].__setitem__("pad", (i[0].detach(), o.detach()))))
    stream_calls = []

    def on_stream(m, i, o):
        (current[-1]["stream"] if current else stream_calls).append((i[0].detach(), o.detach()))

    hooks.append(model.stream.register_forward_hook(on_stream))
    logits = model(x)
    for h in hooks:
        h.remove()
    return logits, stream_calls, records


@pytest.mark.parametrize("act", ["srelu", "bn-relu"])
@pytest.mark.parametrize("abits,res_bits,train_mode", [(4, 8, False), (4, 8, True), (2, 8, False), (4, 6, False)])
def test_residual_add_is_an_integer_add(act, abits, res_bits, train_mode):
    model = build_model(parse_arch("wrn-14-1", act=act, abits=abits, res_bits=res_bits, in_channels=3))
    model.train(train_mode)
    scale = quant.RES_RANGE / 2 ** (res_bits - 1)
    lo, hi = -quant.RES_RANGE, quant.RES_RANGE - scale

    def check(t, what):
        assert on_grid(t, scale), what
        assert t.min() >= lo and t.max() <= hi, what

    torch.manual_seed(1)
    _, before, records = trace_blocks(model, torch.rand(6, 3, 16, 16))
    assert len(before) == 1  # the first conv's output enters the stream
    check(before[0][1], "first conv output")
    assert len(records) == 6
    assert sum(r["block"].pool is not None for r in records) == 2
    distinct = set()
    for r in records:
        x, calls = r["in"], r["stream"]
        check(x, "block input")
        downsample = r["block"].pool is not None
        assert len(calls) == (3 if downsample else 2)
        branch = calls[0][1]
        check(branch, "conv branch after the stream")
        if downsample:
            pool_in, pool_out = calls[1]
            assert torch.equal(pool_in, F.avg_pool2d(x, 2))
            check(pool_out, "pooled shortcut after the stream")
            assert torch.equal(r["pad"][0], pool_out)
        else:
            assert torch.equal(r["pad"][0], x)
        shortcut = r["pad"][1]
        check(shortcut, "shortcut after pad")
        add_in, add_out = calls[-1]
        assert torch.equal(add_in, branch + shortcut)  # both inputs of the add are on the stream's grid ...
        assert on_grid(add_in, scale)  # ... so the add is an integer add
        check(add_out, "add output")
        assert torch.equal(add_out, r["out"])
        distinct.update(torch.unique(add_out).tolist())
    assert len(distinct) > 10  # the stream carries real signals, not a constant


@pytest.mark.parametrize("abits", [None, 4])
def test_downsampling_shortcut_is_avg_pool_and_zero_channels(abits):
    model = build_model(parse_arch("wrn-8-2", act="srelu", abits=abits, in_channels=3)).eval()
    torch.manual_seed(2)
    _, _, records = trace_blocks(model, torch.rand(3, 3, 16, 16))
    down = [r for r in records if r["block"].pool is not None]
    assert len(down) == 2
    for r in down:
        block = r["block"]
        assert sum(isinstance(m, nn.Conv2d) for m in block.modules()) == 2  # no 1x1 conv on the shortcut
        pad_in, pad_out = r["pad"]
        c_in = r["in"].shape[1]
        assert pad_in.shape[1] == c_in and pad_out.shape[1] == 2 * c_in
        if abits is None:
            assert torch.equal(pad_in, F.avg_pool2d(r["in"], 2))
        assert torch.equal(pad_out[:, :c_in], pad_in)
        assert torch.equal(pad_out[:, c_in:], torch.zeros_like(pad_out[:, c_in:]))
        assert not torch.equal(pad_in, torch.zeros_like(pad_in))


# --------------------------------------------------------------------------- logits and temperature


@pytest.mark.parametrize("arch,overrides,t", [("wrn-8-1", {}, 4.0), ("tiny", {}, 3.0),
                                              ("wrn-8-1", {"temperature": 0.5}, 0.5)])
def test_logits_are_global_average_pool_over_t(arch, overrides, t):
    model = build_model(parse_arch(arch, in_channels=3, **overrides)).eval()
    assert model.cfg.logit_temperature == t
    assert model.inv_temperature == 1.0 / model.cfg.logit_temperature
    heads = []
    h = model.head_conv.register_forward_hook(lambda m, i, o: heads.append(o))
    logits = model(torch.rand(5, 3, 8, 8))
    h.remove()
    assert torch.equal(logits, heads[0].mean(dim=(2, 3)) * (1.0 / t))


def test_default_temperatures_are_the_seeds():
    assert parse_arch("wrn-20-10").logit_temperature == 40.0
    assert parse_arch("wrn-20-10", binary=False).logit_temperature == 80.0
    assert parse_arch("wrn-20-10", num_classes=100).logit_temperature == 25.0
    assert parse_arch("wrn-20-10", binary=False, num_classes=100).logit_temperature == 25.0
    assert ArchConfig().logit_temperature == 40.0
    assert build_model(parse_arch("wrn-20-10")).inv_temperature == 1.0 / 40.0
    # narrower heads scale T by head channels / 640
    assert parse_arch("wrn-8-1").logit_temperature == 40.0 * 64 / 640
    assert parse_arch("wrn-8-1", binary=False).logit_temperature == 80.0 * 64 / 640
    assert parse_arch("wrn-20-10", temperature=3.0).logit_temperature == 3.0
    # McDonnell divides by T only in the shifted-ReLU nets: BN heads use T = 1; a k-bit head T = 3 (measured)
    assert parse_arch("tiny").logit_temperature == 3.0
    assert parse_arch("wrn-20-10", act="bn-relu").logit_temperature == 1.0
    assert parse_arch("wrn-20-10", abits=4).logit_temperature == 3.0


# --------------------------------------------------------------------------- configuration errors


@pytest.mark.parametrize("make,flag", [
    (lambda: parse_arch("wrn-9-1"), "depth"),
    (lambda: ArchConfig(depth=9), "depth"),
    (lambda: ArchConfig(depth=2), "depth"),
    (lambda: parse_arch("wrn-8-0"), "width"),
    (lambda: parse_arch("tiny", abits=9), "abits"),
    (lambda: ArchConfig(abits=9), "abits"),
    (lambda: quant.srelu_quant(9), "--abits"),
    (lambda: quant.relu_quant(0), "--abits"),
    (lambda: parse_arch("tiny", act="relu"), "act"),
    (lambda: ArchConfig(act="relu"), "act"),
    (lambda: parse_arch("foo"), "arch"),
    (lambda: parse_arch("wrn-20"), "arch"),
    (lambda: parse_arch("wrn-20-10", temperature=0.0), "temperature"),
    (lambda: ArchConfig.from_dict({"depth": 8, "colour": 1}), "colour"),
])
def test_bad_configs_raise_config_error_naming_the_parameter(make, flag):
    with pytest.raises(ConfigError) as info:
        make()
    assert flag in str(info.value)


def test_abits_zero_means_float_activations():
    cfg = parse_arch("tiny", abits=0)
    assert cfg.abits is None and not cfg.quantized
    assert not any(isinstance(m, QuantIdentity) for m in build_model(cfg).modules())
    assert sum(isinstance(m, QuantIdentity) for m in build_model(parse_arch("tiny")).modules()) == 3 + 7


def test_srelu_zero_point_is_recorded_and_old_configs_keep_theirs():
    tiny = parse_arch("tiny")
    assert tiny.srelu_zero_point == quant.SRELU_ZERO_POINT[4] == 2
    assert ArchConfig.from_dict(tiny.to_dict()) == tiny
    legacy = {k: v for k, v in tiny.to_dict().items() if k != "srelu_zero_point"}  # written before z was
    assert ArchConfig.from_dict(legacy).srelu_zero_point == quant.LEGACY_SRELU_ZERO_POINT[4] == 4
    model = build_model(ArchConfig.from_dict({**legacy, "in_channels": 1})).eval()
    y = model.head_act(torch.linspace(-5, 10, 1001))
    assert y.max().item() == 15 / 4 - 1 and on_grid(y + 1, 0.25)
    assert parse_arch("tiny", srelu_zero_point=1).srelu_zero_point == 1
    assert parse_arch("tiny", act="bn-relu").srelu_zero_point is None
    assert parse_arch("tiny", abits=0).srelu_zero_point is None


@pytest.mark.parametrize("kw,match", [
    (dict(srelu_zero_point=16), r"srelu_zero_point: expected an integer 1\.\.15 for 4-bit activations, got 16"),
    (dict(srelu_zero_point=0), "got 0"),
    (dict(srelu_zero_point=2.5), "got 2.5"),
    (dict(srelu_zero_point=True), "got True"),
    (dict(srelu_zero_point=2, act="bn-relu"), "only a quantized shifted-ReLU net has one"),
    (dict(srelu_zero_point=2, abits=0), "only a quantized shifted-ReLU net has one"),
])
def test_bad_srelu_zero_point(kw, match):
    with pytest.raises(ConfigError, match=match):
        parse_arch("tiny", **kw)


def test_quantized_srelu_nets_fix_the_input_scale_and_learn_a_logit_gain():
    """Without BN in the body, the input BN's learned scale is the net's one global gain and saturates the
    quantized net; those nets keep it at 1 and learn a gain on the logits."""
    q = parse_arch("wrn-8-1", abits=4, in_channels=1)
    assert (q.input_bn_learned, q.logit_gain) == (False, True)
    for other in (parse_arch("wrn-8-1", in_channels=1), parse_arch("wrn-8-1", act="bn-relu", abits=4, in_channels=1)):
        assert (other.input_bn_learned, other.logit_gain) == (True, False)
    model = build_model(q)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = torch.rand(8, 1, 8, 8), torch.arange(8) % 10
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    assert torch.equal(model.input_bn.weight, torch.ones(1)) and torch.equal(model.input_bn.bias, torch.zeros(1))
    assert model.logit_gain.item() != 1.0  # it is trained
    gain = model.logit_gain.detach().clone()
    model.eval()
    with torch.no_grad():
        logits = model(x)
        model.logit_gain.fill_(1.0)
        assert torch.allclose(model(x) * gain, logits)


def test_checkpoints_recorded_before_the_scale_fields_keep_their_scales():
    old = parse_arch("tiny", in_channels=1).to_dict()
    for key in ("input_bn_learned", "logit_gain"):
        del old[key]
    legacy = ArchConfig.from_dict(old)
    assert (legacy.input_bn_learned, legacy.logit_gain) == (True, False)
    assert ArchConfig.from_dict(parse_arch("tiny", in_channels=1).to_dict()) == parse_arch("tiny", in_channels=1)


@pytest.mark.parametrize("field, value, message", [("input_bn_learned", "yes", "true or false"),
                                                   ("logit_gain", 1, "true or false")])
def test_scale_fields_are_checked(field, value, message):
    with pytest.raises(ConfigError, match=f"^{field}: expected .*{message}"):
        ArchConfig(**{field: value})
