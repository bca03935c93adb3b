"""The run configuration: sections of typed keys with defaults, read from TOML or YAML, flags on top.

A configuration is a plain ``{section: {key: value}}`` dict. ``[train]`` holds
:class:`onebit.training.trainer.TrainConfig`'s fields, except those in ``[data]`` and ``[model]``. The resolved
configuration is saved as ``run.toml`` in the run folder. TOML has no null, so keys whose value is ``None``
(meaning "the default of that stage") are left out of it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path

from onebit.errors import ConfigError, check_positive, renamed
from onebit.training.trainer import TrainConfig

CONFIG_FILE = "run.toml"
DEFAULT_DEVICE = "ecp5-25k"


@dataclass
class Data:
    dataset: str = "digits"  # digits, fashion-mnist, KIND:PATH or PATH (as `onebit train --data`)


@dataclass
class Model:
    arch: str = "tiny"
    act: str = "srelu"
    abits: int = 4
    temperature: float | None = None
    # a network of the user's own instead of training one: a QONNX file (Brevitas' export_qonnx), and what its
    # float input is made of where it does not feed a quantizer directly (as `onebit lower`)
    onnx: str | None = None
    # a run onebit train (or an earlier onebit run's train/) wrote, instead of training: its checkpoint and
    # config.json; the architecture and the training settings are that run's
    checkpoint: str | None = None
    input_type: str | None = None  # e.g. UINT8
    input_scale: str | float | None = None  # e.g. "1/255"


@dataclass
class Verify:
    frames: int | None = None  # test images checked through export, packing and the simulator; None: all


@dataclass
class Fold:
    target_fps: float = 1000.0
    max_luts: int | None = None


@dataclass
class Hw:
    device: str | None = None  # None: the board's device, else DEFAULT_DEVICE
    board: str | None = None  # a board ('onebit boards') or a board's .toml file: its pins, PLL and host link
    baud: int | None = None  # the host link's baud rate (None: the board's)
    board_frames: int = 32  # test images run through the virtual board (the board-level design behind a pty)
    clock_mhz: float = 50.0
    frames: int = 4  # test images co-simulated in Verilator edge by edge (every beat's value and cycle)
    cosim_seconds: float = 120.0  # then every test image's output, as far as Verilator gets in about this long
    synth: bool = True
    pnr: bool = True  # place and route and the bitstream (needs synth)


_IN_OTHER_SECTIONS = {"data", "arch", "fp", "act", "abits", "temperature"}
SECTIONS: dict[str, type] = {"data": Data, "model": Model, "train": TrainConfig, "verify": Verify, "fold": Fold,
                             "hw": Hw}


def keys(section: str) -> dict[str, tuple[object, object]]:
    """``{key: (type hint, default)}`` of a section."""
    cls = SECTIONS[section]
    hints = typing.get_type_hints(cls)
    return {f.name: (hints[f.name], f.default) for f in dataclasses.fields(cls)
            if not (cls is TrainConfig and f.name in _IN_OTHER_SECTIONS)}


def defaults() -> dict:
    return {s: {k: d for k, (_, d) in keys(s).items()} for s in SECTIONS}


def _conforms(value, hint) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, h) for h in typing.get_args(hint))
    if origin is list:
        return isinstance(value, list) and all(_conforms(v, typing.get_args(hint)[0]) for v in value)
    if hint is type(None):
        return value is None
    if isinstance(value, bool):
        return hint is bool
    if hint is float:
        return isinstance(value, (int, float))
    return isinstance(value, hint)


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _type_name(hint) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(h) for h in typing.get_args(hint) if h is not type(None))
    if typing.get_origin(hint) is list:
        return f"a list of {_type_name(typing.get_args(hint)[0]).split(' ', 1)[-1]}s"
    return _TYPE_NAMES.get(hint, str(hint))


def check(raw, source: str) -> dict:
    """Validate a partial configuration (from a file or flags); returns it with floats made float."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a table of sections ({', '.join(SECTIONS)}), got {type(raw).__name__}")
    out: dict = {}
    for section, values in raw.items():
        if section not in SECTIONS:
            raise ConfigError(f"{source}: unknown section [{section}]; expected some of {', '.join(SECTIONS)}")
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: [{section}] must be a table of keys, got {type(values).__name__}")
        known = keys(section)
        for key, value in values.items():
            if key not in known:
                raise ConfigError(f"{source}: [{section}] unknown key {key!r}; expected one of {', '.join(known)}")
            hint = known[key][0]
            if not _conforms(value, hint):
                raise ConfigError(f"{source}: [{section}] {key}: expected {_type_name(hint)}, got {value!r}")
            if isinstance(value, int) and not isinstance(value, bool) and float in typing.get_args(hint) + (hint,):
                value = float(value)
            out.setdefault(section, {})[key] = value
    return out


def merge(*layers: dict) -> dict:
    """Defaults, then each (checked) layer on top, key by key."""
    cfg = defaults()
    for layer in layers:
        for section, values in layer.items():
            cfg[section].update(values)
    check_values(cfg)
    return cfg


#: the `onebit run` flag of each configuration key that has one
FLAGS = {"data.dataset": "--data", "model.arch": "--arch", "model.act": "--act", "model.abits": "--abits",
         "train.epochs": "--epochs", "train.seed": "--seed", "verify.frames": "--frames",
         "fold.target_fps": "--target-fps", "hw.device": "--device", "hw.clock_mhz": "--clock-mhz",
         "hw.board": "--board", "hw.baud": "--baud",
         "model.onnx": "--model", "model.input_type": "--input-type", "model.input_scale": "--input-scale",
         "model.checkpoint": "--checkpoint"}


def config_keys() -> set[str]:
    """Every ``section.key``."""
    return {f"{s}.{k}" for s in SECTIONS for k in keys(s)}


#: the configuration key of each architecture parameter (``parse_arch``) and TrainConfig field set from one
ARCH_PARAMS = {k: f"model.{k}" for k in ("arch", "act", "abits", "temperature")}
TRAIN_PARAMS = {**ARCH_PARAMS, "data": "data.dataset",
                **{f.name: f"train.{f.name}" for f in dataclasses.fields(TrainConfig)
                   if f.name not in _IN_OTHER_SECTIONS}}


def _positive(cfg: dict, section: str, key: str, integer: bool = False) -> None:
    if cfg[section][key] is not None:
        check_positive(f"{section}.{key}", cfg[section][key], integer=integer)


def check_values(cfg: dict) -> None:
    """Value checks no stage makes before it has spent time on the earlier ones; errors name the config key."""
    from onebit.training.config import parse_arch

    m = cfg["model"]
    if m["checkpoint"] is not None:
        if m["onnx"] is not None:
            raise ConfigError("model.checkpoint: a trained run and a QONNX file (model.onnx, --model) are two "
                              "different networks; give one of them", param="model.checkpoint")
        # a trained run's network is its own; run.toml says which it is
        m.update(_check_trained_run(m["checkpoint"], cfg["data"]["dataset"]))
    if m["onnx"] is not None:
        _check_user_model(m)
    elif m["input_type"] is not None or m["input_scale"] is not None:
        key = "model.input_type" if m["input_type"] is not None else "model.input_scale"
        raise ConfigError(f"{key}: describes the input of a network of your own; set model.onnx (--model) too "
                          f"(the QONNX file), or leave it out for a network onebit trains", param=key)
    if m["abits"] is None or not 1 <= m["abits"] <= 8:
        raise ConfigError(f"model.abits: the hardware flow needs quantized activations, 1..8 bits; got {m['abits']}",
                          param="model.abits")
    with renamed(ARCH_PARAMS):
        parse_arch(m["arch"], act=m["act"], abits=m["abits"], temperature=m["temperature"])
    for section, key, integer in [("verify", "frames", True), ("fold", "target_fps", False),
                                  ("fold", "max_luts", True), ("hw", "clock_mhz", False), ("hw", "frames", True),
                                  ("hw", "baud", True), ("hw", "board_frames", True)]:
        _positive(cfg, section, key, integer)
    with renamed(TRAIN_PARAMS):
        TrainConfig(**cfg["train"]).check()
    if not cfg["hw"]["cosim_seconds"] >= 0:
        raise ConfigError(f"hw.cosim_seconds: expected a number >= 0 (0: edge by edge only), got "
                          f"{cfg['hw']['cosim_seconds']}", param="hw.cosim_seconds")
    if cfg["hw"]["pnr"] and not cfg["hw"]["synth"]:
        raise ConfigError("hw.pnr: true needs hw.synth = true (place and route works on the synthesised netlist)",
                          param="hw.pnr")
    if cfg["hw"]["board"] is not None:
        _check_board(cfg["hw"])
    elif cfg["hw"]["baud"] is not None:
        raise ConfigError("hw.baud: the host link's baud rate needs a board (hw.board, --board)", param="hw.baud")
    if cfg["hw"]["synth"]:
        _check_device(device(cfg))


def device(cfg: dict) -> str:
    """The run's FPGA: ``[hw] device``, else the board's, else DEFAULT_DEVICE."""
    hw = cfg["hw"]
    if hw["device"] is not None:
        return hw["device"]
    return board(cfg).device if hw["board"] is not None else DEFAULT_DEVICE


def board(cfg: dict):
    """The run's :class:`~onebit.hw.boards.Board` (None without ``[hw] board``)."""
    if cfg["hw"]["board"] is None:
        return None
    from onebit.hw.boards import check_board

    try:
        return check_board(cfg["hw"]["board"])
    except ConfigError as e:
        raise ConfigError(f"hw.board: {e}", param="hw.board") from None


def _check_board(hw: dict) -> None:
    """The board exists, carries ``[hw] device`` if one is set, and its link and PLL can make ``[hw] baud`` and
    ``[hw] clock_mhz`` -- checked before any stage spends time."""
    try:
        from onebit.hw.board import check_baud
        from onebit.hw.pll import pll_config
    except ModuleNotFoundError:  # the hardware stage says so itself when it is reached
        return
    profile = board({"hw": hw})
    if hw["device"] is not None and hw["device"] != profile.device:
        raise ConfigError(f"hw.device: {profile.name} carries a {profile.device}, got {hw['device']} (leave the "
                          f"device out with a board)", param="hw.device")
    with renamed({"clock_mhz": "hw.clock_mhz"}):
        pll = pll_config(profile.family, profile.clock_hz, hw["clock_mhz"] * 1e6)
    with renamed({"baud": "hw.baud"}):
        check_baud(profile, hw["baud"], pll.fout_hz)


def trained_run(path: str) -> Path:
    """The run folder of ``[model] checkpoint`` (a folder, or the checkpoint file in one)."""
    p = Path(path)
    return p.parent if p.is_file() else p


def _check_trained_run(path: str, dataset: str) -> dict:
    """The run's files are there and valid, and it was trained on ``[data] dataset`` (whose test images the
    later stages check it on); returns its network as ``[model]`` keys."""
    from onebit.errors import CheckpointError
    from onebit.training.checkpoint import CHECKPOINT, load_checkpoint
    from onebit.training.trainer import load_train_config

    run = trained_run(path)
    try:
        if not (run / CHECKPOINT).is_file():
            raise CheckpointError(f"{path}: no such run folder or checkpoint; expected a folder written by "
                                  f"'onebit train' (checkpoint.pt and config.json)")
        trained = load_train_config(run)
        arch = load_checkpoint(run / CHECKPOINT)["arch"]
    except CheckpointError as e:
        raise ConfigError(f"model.checkpoint: {e}", param="model.checkpoint") from None
    if trained.data != dataset:
        raise ConfigError(f"model.checkpoint: {path} was trained on {trained.data!r}, but data.dataset is "
                          f"{dataset!r}; the flow checks the network on that data set's test images (set it to "
                          f"the run's)", param="model.checkpoint")
    return {"arch": trained.arch, "act": arch.get("act", trained.act), "abits": arch.get("abits", trained.abits),
            "temperature": arch.get("temperature", trained.temperature)}


def _check_user_model(m: dict) -> None:
    from onebit.export.integer_input import input_spec

    if not Path(m["onnx"]).is_file():
        raise ConfigError(f"model.onnx: {m['onnx']}: no such file; expected a QONNX file (Brevitas' export_qonnx)",
                          param="model.onnx")
    with renamed({"input_type": "model.input_type", "input_scale": "model.input_scale"}):
        input_spec(m["input_type"], None if m["input_scale"] is None else str(m["input_scale"]))


def _check_device(device: str) -> None:
    try:
        from onebit.hw.synth import check_device
    except ModuleNotFoundError:  # the hardware stage says so itself when it is reached
        return
    try:
        check_device(device)
    except ConfigError as e:
        raise ConfigError(f"hw.device: {e}", param="hw.device") from None


def train_config(cfg: dict) -> TrainConfig:
    m = cfg["model"]
    return TrainConfig(data=cfg["data"]["dataset"], arch=m["arch"], act=m["act"], abits=m["abits"],
                       temperature=m["temperature"], **cfg["train"])


# ----- files -----------------------------------------------------------------------------------------------
def load_file(path: str | Path, flag: str = "--config") -> dict:
    """A TOML (.toml) or YAML (.yaml, .yml) configuration file, checked."""
    path = Path(path)
    source = f"{flag} {path}"
    if path.suffix not in (".toml", ".yaml", ".yml"):
        raise ConfigError(f"{source}: expected a .toml, .yaml or .yml file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{source}: not readable ({type(e).__name__}: {e})") from None
    raw = _parse_toml(text, source) if path.suffix == ".toml" else _parse_yaml(text, source)
    return check(raw if raw is not None else {}, source)


def _parse_toml(text: str, source: str):
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: not valid TOML ({e})") from None


def _parse_yaml(text: str, source: str):
    try:
        import yaml
    except ModuleNotFoundError:
        raise ConfigError(f"{source}: reading YAML needs PyYAML (pip install pyyaml); or use a .toml file") from None

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        first = " ".join(str(e).split())
        raise ConfigError(f"{source}: not valid YAML ({first[:200]})") from None


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("inf" if v > 0 else "-inf" if v < 0 else "nan")
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    return str(v)


def to_toml(cfg: dict) -> str:
    lines = ["# onebit run configuration: `onebit run --config run.toml` repeats this run.",
             "# Unset keys take their defaults (for [train]: those of `onebit train`)."]
    for section, values in cfg.items():
        lines += ["", f"[{section}]"]
        lines += [f"{k} = {_toml_value(v)}" if v is not None else f"# {k} = (unset: the default)"
                  for k, v in values.items()]
    return "\n".join(lines) + "\n"
