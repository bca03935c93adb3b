"""Architecture configurations: ``wrn-d-k`` generally, ``wrn-20-10`` (the seeds' net) and ``tiny``."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from onebit.errors import ConfigError, check_positive

ACTIVATIONS = ("bn-relu", "srelu")
QUANTIZED_TEMPERATURE = 3.0  # T of the shifted-ReLU nets with k-bit activations (see logit_temperature)
#: Zero point z of the shifted-ReLU code for k bits; its step is 1/z so that -1 is the code 0. 4 bits: z = 2,
#: the range [-1, 6.5] in steps of 0.5. With z = 4 ([-1, 2.75] in quarter steps) wrn-8-2 on Fashion-MNIST puts
#: 20-40 % of its activations on the top code, where the quantizer passes no gradient (two epochs, SGDR [2],
#: T = 3: 71.8 % with z = 4, 75.3 % with z = 2). Checkpoints record their z (``srelu_zero_point``).
SRELU_ZERO_POINT = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 8, 7: 16, 8: 32}
#: The table before 4 bits moved to z = 2: what a checkpoint that records no z was trained with.
LEGACY_SRELU_ZERO_POINT = {**SRELU_ZERO_POINT, 4: 4}
#: what a checkpoint recorded before these fields existed was trained with
LEGACY_SCALES = {"input_bn_learned": True, "logit_gain": False}


@dataclass(frozen=True)
class ArchConfig:
    """Everything that determines the network's structure and arithmetic.

    ``abits=None`` keeps activations in floating point (the seeds' networks); ``abits=k`` quantizes every
    activation to k bits (the hardware variants). ``temperature`` divides the logits (McDonnell's 1/T).
    """

    depth: int = 20
    width: int = 10
    binary: bool = True
    act: str = "srelu"
    abits: int | None = None
    res_bits: int = 8
    in_channels: int = 3
    num_classes: int = 10
    image_size: int = 32
    temperature: float | None = None
    srelu_zero_point: int | None = None  # quantized srelu: the code's z (step 1/z); None: SRELU_ZERO_POINT's
    # the input BN's scale and offset are learned (else they stay 1 and 0: the BN only standardises the image);
    # None: learned except in the quantized shifted-ReLU nets
    input_bn_learned: bool | None = None
    # a learned positive factor on the logits (the only trainable gain of a net without BN); None: in the quantized
    # shifted-ReLU nets
    logit_gain: bool | None = None

    def __post_init__(self):
        self._check_types()
        if self.depth < 8 or (self.depth - 2) % 6:
            raise ConfigError(f"depth: expected 6n+2 with n >= 1 (8, 14, 20, 26, ...), got {self.depth}",
                              param="depth")
        if self.width < 1:
            raise ConfigError(f"width: expected a positive integer, got {self.width}", param="width")
        if self.act not in ACTIVATIONS:
            raise ConfigError(f"act: expected one of {', '.join(ACTIVATIONS)}, got {self.act!r}", param="act")
        if self.abits is not None and not 1 <= self.abits <= 8:
            raise ConfigError(f"abits: expected 1..8 (or none for float activations), got {self.abits}",
                              param="abits")
        if not 2 <= self.res_bits <= 16:
            raise ConfigError(f"res_bits: expected 2..16, got {self.res_bits}", param="res_bits")
        if self.in_channels < 1:
            raise ConfigError(f"in_channels: expected >= 1, got {self.in_channels}", param="in_channels")
        if self.num_classes < 2:
            raise ConfigError(f"num_classes: expected >= 2, got {self.num_classes}", param="num_classes")
        if self.image_size < 4 or self.image_size % 4:
            raise ConfigError(f"image_size {self.image_size}: the WRN halves it twice (stride-2 conv and 2x2 "
                              f"average pooling must agree), so it must be a multiple of 4", param="image_size")
        if self.temperature is not None:
            check_positive("temperature", self.temperature)
        self._resolve_zero_point()
        self._resolve_scales()

    def _resolve_scales(self) -> None:
        """The quantized shifted-ReLU nets have no normalisation in the body, so every scale in them is fixed by
        the He constants, except the input BN's, which is then the net's one global gain: trained, it grows until
        the 8-bit input code saturates (to 7 after two Fashion-MNIST epochs, 24 with a logit gain), and the
        residual stream clips. These nets standardise the input without a learned scale and learn a gain on the
        logits instead. On Fashion-MNIST (wrn-8-2 with 4-bit activations, two epochs of SGDR, T = 3): 75.3 %
        test with the learned input scale, 78.5 % with it fixed, 82.6 % with it fixed and the logit gain, and
        71.6 % with the logit gain alone. A wider stream code on top (range 16 or 32 instead of RES_RANGE's 8,
        8 bits) clipped less and trained worse: 79.7 and 78.8 %."""
        plain = self.quantized and self.act == "srelu"
        if self.input_bn_learned is None:
            object.__setattr__(self, "input_bn_learned", not plain)
        if self.logit_gain is None:
            object.__setattr__(self, "logit_gain", plain)
        for name in ("input_bn_learned", "logit_gain"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}: expected true or false, got {getattr(self, name)!r}", param=name)

    def _resolve_zero_point(self) -> None:
        z = self.srelu_zero_point
        if not (self.quantized and self.act == "srelu"):
            if z is not None:
                raise ConfigError(f"srelu_zero_point: only a quantized shifted-ReLU net has one (act {self.act}, "
                                  f"abits {self.abits}), got {z!r}", param="srelu_zero_point")
            return
        if z is None:
            object.__setattr__(self, "srelu_zero_point", SRELU_ZERO_POINT[self.abits])
        elif isinstance(z, bool) or not isinstance(z, int) or not 1 <= z < 2**self.abits:
            raise ConfigError(f"srelu_zero_point: expected an integer 1..{2**self.abits - 1} for {self.abits}-bit "
                              f"activations, got {z!r}", param="srelu_zero_point")

    def _check_types(self) -> None:
        """Values read from a file (a checkpoint's architecture) may be of any type; name the first wrong one."""
        for name in ("depth", "width", "res_bits", "in_channels", "num_classes", "image_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name}: expected an integer, got {value!r}", param=name)
        if self.abits is not None and (isinstance(self.abits, bool) or not isinstance(self.abits, int)):
            raise ConfigError(f"abits: expected an integer 1..8 (or none for float activations), got {self.abits!r}",
                              param="abits")
        if not isinstance(self.binary, bool):
            raise ConfigError(f"binary: expected true or false, got {self.binary!r}", param="binary")

    @property
    def blocks_per_stage(self) -> int:
        return (self.depth - 2) // 6

    @property
    def widths(self) -> tuple[int, int, int]:
        return 16 * self.width, 32 * self.width, 64 * self.width

    @property
    def quantized(self) -> bool:
        return self.abits is not None

    @property
    def logit_temperature(self) -> float:
        """T in ``logits = GAP(head conv) / T``.

        McDonnell's code divides the logits by T only in the shifted-ReLU networks (T = 40 for CIFAR-10 with
        1-bit weights, 80 full precision, 25 CIFAR-100, for WRN-20-10's 640 channels into the head); there the
        head's input is unnormalised and grows with its fan-in, so T is scaled by ``head channels / 640``
        (never below 1): WRN-20-10 gets the seeds' values exactly. With BN the head's input is normalised:
        T = 1, following McDonnell's code (his BN net has no 1/T), not a measurement: on the digits fp + bn-relu
        gave 98.61 % with T = 1 and 99.17 % with T = 4, within one seed's noise. With quantized activations
        the head reads a bounded k-bit code and T = 3, a measurement: on Fashion-MNIST, wrn-8-2 with 4-bit
        activations collapses at T = 1 (every image gets the same logits within ten steps at lr 0.1) and
        reaches 66.9 / 71.8 / 63.8 / 53.9 % after two epochs with T = 2 / 3 / 4 / 6; on the digits the tiny net
        is within a few images of 360 for T = 1..8 (benchmarks/results/accuracy/digits-tiny*).
        """
        if self.temperature is not None:
            return self.temperature
        if self.act == "bn-relu":
            return 1.0
        if self.quantized:
            return QUANTIZED_TEMPERATURE
        seed_t = 25.0 if self.num_classes > 10 else (40.0 if self.binary else 80.0)
        return max(1.0, seed_t * self.widths[2] / 640)

    @property
    def name(self) -> str:
        return f"wrn-{self.depth}-{self.width}"

    def describe(self) -> str:
        weights = "1-bit" if self.binary else "fp32"
        acts = f"{self.abits}-bit" if self.quantized else "float"
        return f"{self.name} {weights} weights, {self.act}, {acts} activations"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ArchConfig":
        if not isinstance(d, dict):
            raise ConfigError(f"architecture: expected a table of fields, got {type(d).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - fields
        if unknown:
            raise ConfigError(f"architecture: unknown fields {sorted(unknown)}; expected some of {sorted(fields)}")
        legacy = "srelu_zero_point" not in d and d.get("act", "srelu") == "srelu"  # recorded before z was
        if legacy and d.get("abits") in LEGACY_SRELU_ZERO_POINT:
            d = {**d, "srelu_zero_point": LEGACY_SRELU_ZERO_POINT[d["abits"]]}
        if "logit_gain" not in d:  # recorded before the input BN's scale and the logit gain were fields
            d = {**d, **LEGACY_SCALES}
        return cls(**d)


#: Named configurations. ``tiny`` is the embedded default: small enough for a small FPGA, hardware-ready.
PRESETS: dict[str, dict] = {
    "tiny": dict(depth=8, width=1, binary=True, act="srelu", abits=4),
    "wrn-20-10": dict(depth=20, width=10),
}

_WRN = re.compile(r"^wrn-(\d+)-(\d+)$")


def arch_names() -> list[str]:
    return [*PRESETS, "wrn-D-K"]


def parse_arch(name: str, **overrides) -> ArchConfig:
    """A named config (``tiny``, ``wrn-20-10``, ``wrn-D-K``) with overrides.

    ``None`` overrides are ignored; ``abits=0`` asks for float activations.
    """
    key = name.strip().lower()
    if key in PRESETS:
        base = dict(PRESETS[key])
    elif m := _WRN.match(key):
        base = dict(depth=int(m.group(1)), width=int(m.group(2)))
    else:
        raise ConfigError(f"arch: unknown architecture {name!r}; expected one of {', '.join(arch_names())}",
                          param="arch")
    base.update({k: v for k, v in overrides.items() if v is not None})
    if base.get("abits") == 0:  # explicit request for float activations
        base["abits"] = None
    return ArchConfig(**base)
