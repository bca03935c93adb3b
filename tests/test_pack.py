"""The packed deployment checkpoint: one bit per binary weight, exact round trip, size, and refusal of bad files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from onebit.errors import CheckpointError
from onebit.training.checkpoint import load_trained
from onebit.training.config import parse_arch
from onebit.training.data import load_dataset
from onebit.training.model import build_model
from onebit.training.pack import PACK_FORMAT, load_packed, pack_arrays, packed_bytes, payload_bytes, save_packed
from onebit.training.trainer import predict


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def randomized(model):
    """Give every float tensor a non-default value, and some latent weights exact zeros of both signs."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
        for _, conv in model.binary_convs():
            conv.weight.view(-1)[:3] = 0.0
            conv.weight.view(-1)[3:5] = -0.0
    return model.eval()


def assert_round_trip(model, path, images):
    size = save_packed(model, path)
    assert size == path.stat().st_size
    loaded, meta = load_packed(path)
    assert meta["format"] == PACK_FORMAT
    assert meta["arch"] == model.cfg.to_dict()
    assert not loaded.training
    before = predict(model, images)
    after = predict(loaded, images)
    assert before.shape == (len(images), model.cfg.num_classes)
    assert np.array_equal(before, after)
    for _, conv in loaded.binary_convs():
        assert set(torch.unique(conv.weight).tolist()) <= {-1.0, 1.0}
    return before


@pytest.mark.slow
def test_trained_run_round_trip_is_exact(trained_run, digits, tmp_path):
    run, summary = trained_run
    model, _ = load_trained(run)
    logits = assert_round_trip(model, tmp_path / "packed.npz", digits.x_test)
    acc = float((logits.argmax(1) == digits.y_test).mean())
    assert acc == pytest.approx(summary["test_acc"], abs=1e-12)


@pytest.mark.parametrize("act", ["srelu", "bn-relu"])
@pytest.mark.parametrize("abits", [4, 1, 0])
@pytest.mark.parametrize("fp", [False, True])
def test_random_init_round_trip_is_exact(act, abits, fp, digits, tmp_path):
    torch.manual_seed(11)
    cfg = parse_arch("tiny", act=act, abits=abits, binary=False if fp else None, in_channels=1, num_classes=10)
    model = randomized(build_model(cfg))
    logits = assert_round_trip(model, tmp_path / "m.npz", digits.x_test)
    assert np.unique(logits.argmax(1)).size > 1 or np.ptp(logits) > 0  # a live network, not a constant


def test_binary_weights_take_one_bit_each(tmp_path):
    torch.manual_seed(5)
    model = randomized(build_model(parse_arch("wrn-8-1", in_channels=3, num_classes=7)))
    path = tmp_path / "m.npz"
    save_packed(model, path)
    state = model.state_dict()
    binary = {f"{n}.weight": m.weight.detach() for n, m in model.binary_convs()}
    assert len(binary) == 8
    with np.load(path, allow_pickle=False) as npz:
        keys = set(npz.files)
        expected = {"meta"} | {f"bits/{k}" for k in binary} | {
            f"float/{k}" for k in state if k not in binary and not k.endswith("num_batches_tracked")}
        assert keys == expected
        bits_total = 0
        for name, w in binary.items():
            arr = npz[f"bits/{name}"]
            assert arr.dtype == np.uint8 and arr.ndim == 1
            assert arr.size == math.ceil(w.numel() / 8)
            bits_total += arr.size
            assert np.array_equal(np.unpackbits(arr, count=w.numel()), (w >= 0).numpy().reshape(-1).astype(np.uint8))
        float_total = sum(npz[k].nbytes for k in keys if k.startswith("float/"))
        for k in keys:
            if k.startswith("float/"):
                assert npz[k].dtype == np.float32
                assert np.array_equal(npz[k], state[k[len("float/"):]].numpy())
        meta_len = npz["meta"].size
    assert bits_total == payload_bytes(model)["binary_bytes"]
    assert float_total == payload_bytes(model)["float_tensor_bytes"]
    # the container adds a bounded header per array; nothing else is stored
    assert path.stat().st_size <= bits_total + float_total + meta_len + 300 * len(keys)


def test_wrn_20_10_packed_size():
    model = build_model(parse_arch("wrn-20-10"))
    assert payload_bytes(model)["binary_bytes"] == 26_737_120 // 8 == 3_342_140
    size = len(packed_bytes(model))
    assert 3_342_140 < size < 4_000_000


def test_np_load_without_pickle_opens_it(tmp_path):
    model = build_model(parse_arch("tiny", in_channels=1))
    path = tmp_path / "m.npz"
    save_packed(model, path, {"data": "digits", "epoch": 3})
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    assert all(a.dtype != object for a in arrays.values())
    meta = json.loads(arrays["meta"].tobytes().decode("utf-8"))
    assert meta["format"] == PACK_FORMAT and meta["data"] == "digits" and meta["epoch"] == 3
    assert set(meta["shapes"]) == {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}


# --------------------------------------------------------------------------- bad files


@pytest.fixture(scope="module")
def good_arrays():
    torch.manual_seed(0)
    return pack_arrays(build_model(parse_arch("tiny", in_channels=1)))


def npz_bytes(arrays) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def with_meta(arrays, **changes):
    meta = json.loads(arrays["meta"].tobytes())
    for k, v in changes.items():
        if v is None:
            meta.pop(k)
        else:
            meta[k] = v
    return {**arrays, "meta": np.frombuffer(json.dumps(meta).encode(), np.uint8)}


def first_bits(arrays):
    return next(k for k in arrays if k.startswith("bits/"))


CORRUPTIONS = {
    "empty": lambda a: b"",
    "text": lambda a: b"this is not a packed checkpoint\n",
    "random": lambda a: np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes(),
    "truncated-half": lambda a: npz_bytes(a)[: len(npz_bytes(a)) // 2],
    "truncated-tail": lambda a: npz_bytes(a)[:-10],
    "truncated-head": lambda a: npz_bytes(a)[:100],
    "no-meta": lambda a: npz_bytes({k: v for k, v in a.items() if k != "meta"}),
    "meta-not-json": lambda a: npz_bytes({**a, "meta": np.frombuffer(b"\xff\xfe{", np.uint8)}),
    "wrong-format": lambda a: npz_bytes(with_meta(a, format="something-else")),
    "missing-tensor": lambda a: npz_bytes({k: v for k, v in a.items() if k != first_bits(a)}),
    "meta-without-arch": lambda a: npz_bytes(with_meta(a, arch=None)),
    "meta-without-shapes": lambda a: npz_bytes(with_meta(a, shapes=None)),
    "bits-too-short": lambda a: npz_bytes({**a, first_bits(a): a[first_bits(a)][:-2]}),
    "bits-too-long": lambda a: npz_bytes({**a, first_bits(a): np.concatenate([a[first_bits(a)], [0, 0]]).astype(np.uint8)}),
}


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_corrupt_packed_file_is_a_checkpoint_error_naming_it(kind, good_arrays, tmp_path):
    path = tmp_path / f"{kind}.npz"
    path.write_bytes(CORRUPTIONS[kind](good_arrays))
    with pytest.raises(CheckpointError) as info:
        load_packed(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_good_arrays_do_load(good_arrays, tmp_path):
    """The corruption cases above start from a file that loads."""
    path = tmp_path / "good.npz"
    path.write_bytes(npz_bytes(good_arrays))
    model, meta = load_packed(path)
    assert meta["format"] == PACK_FORMAT and model.cfg.name == "wrn-8-1"


def test_missing_packed_file_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "nowhere" / "packed.npz"
    with pytest.raises(CheckpointError) as info:
        load_packed(path)
    assert str(path) in str(info.value)
