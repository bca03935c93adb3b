"""FINN+ interoperability: hand a dataflow graph to FINN+'s builder, and run FINN+ on it for cross-checks.

FINN+ (``pip install finn-plus``, checked against 1.6.1) is optional. Its pins conflict with onebit's
(torch 2.13 and brevitas 0.13.4), so it is installed with ``--no-deps`` (DEVELOPERS.md, "FINN+"), either
into onebit's own environment or into a separate one. This module therefore never imports ``finn`` at
module level:

- :func:`write_finn_build` writes a FINN+ build folder (the graph, ``folding_config.json``,
  ``dataflow_build_config.json`` and ``build.py``); it needs no FINN+ at all;
- :func:`finn_execute` / :func:`finn_execute_tensors` run FINN+'s Python execution
  (``finn.core.onnx_exec.execute_onnx``) frame by frame; :func:`finn_exp_cycles` runs FINN+'s
  ``exp_cycles_per_layer`` on a ``SpecializeLayers`` copy. They run in this process if ``finn`` imports
  here, else in the interpreter named by the environment variable ``ONEBIT_FINN_PYTHON`` (which wins when
  set), talking through temporary .onnx/.npy/.json files.

onebit's graph is FINN's format except for one op: ``ChannelPad`` (the shortcut's appended zero channels)
has no FINN+ op and no HLS/RTL backend. For FINN+ it is replaced by :func:`channelpad_as_mvau`, an MVAU
with the 0/1 weight matrix ``[I | 0]`` (INT2, ``noActivation=1``): the same values, a few LUTs more.

This file is also the worker run inside the FINN+ interpreter (``python -c <runpy> finn_interop.py ...``):
its top level imports only the standard library and numpy.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

#: FINN+'s part map (finn.util.basic, finn-plus 1.6.1): board -> (FPGA part, shell flow). The Versal boards
#: have no FINN+ shell flow, so they get stitched IP and estimates only.
BOARDS: dict[str, tuple[str, str | None]] = {
    "Ultra96": ("xczu3eg-sbva484-1-e", "vivado_zynq"),
    "Ultra96-V2": ("xczu3eg-sbva484-1-i", "vivado_zynq"),
    "Pynq-Z1": ("xc7z020clg400-1", "vivado_zynq"),
    "Pynq-Z2": ("xc7z020clg400-1", "vivado_zynq"),
    "ZCU102": ("xczu9eg-ffvb1156-2-e", "vivado_zynq"),
    "ZCU104": ("xczu7ev-ffvc1156-2-e", "vivado_zynq"),
    "ZCU111": ("xczu28dr-ffvg1517-2-e", "vivado_zynq"),
    "RFSoC2x2": ("xczu28dr-ffvg1517-2-e", "vivado_zynq"),
    "RFSoC4x2": ("xczu48dr-ffvg1517-2-e", "vivado_zynq"),
    "KV260_SOM": ("xck26-sfvc784-2LV-c", "vivado_zynq"),
    "AUP-ZU3_8GB": ("xczu3eg-sfvc784-2-e", "vivado_zynq"),
    "U50": ("xcu50-fsvh2104-2L-e", "vitis_alveo"),
    "U200": ("xcu200-fsgd2104-2-e", "vitis_alveo"),
    "U250": ("xcu250-figd2104-2L-e", "vitis_alveo"),
    "U280": ("xcu280-fsvh2892-2L-e", "vitis_alveo"),
    "U55C": ("xcu55c-fsvh2892-2L-e", "vitis_alveo"),
    "VEK280": ("xcve2802-vsvh1760-2MP-e-S", None),
    "VCK190": ("xcvc1902-vsva2197-2MP-e-S", None),
    "V80": ("xcv80-lsva4737-2MHP-e-s", None),
}
#: The part of the ZCU104, the default for cycle estimates (SpecializeLayers' choice of HLS or RTL
#: depends on the part; the cycle formulas of the layers onebit uses do not).
DEFAULT_PART = BOARDS["ZCU104"][0]

#: FINN+ DataflowOutputType values (build_dataflow_config.py).
OUTPUTS = ("estimate_reports", "stitched_ip", "rtlsim_performance", "out_of_context_synth", "bitfile",
           "pynq_driver", "cpp_driver", "deployment_package")

#: The FINN+ build steps after onebit's conversion: FINN+'s default list (default_build_dataflow_steps)
#: without the front end (qonnx_to_finn, tidy_up, streamline, convert_to_hw, minimize_bit_width_initial),
#: whose work onebit's export already did. onebit's folding is applied to the abstract layers, before
#: specialization, because the node names in folding_config.json are the abstract ones.
STEPS_ONEBIT_FOLDING = [
    "step_create_dataflow_partition",
    "step_apply_folding_config",
    "step_specialize_layers",
    "step_minimize_bit_width",
    "step_generate_estimate_reports",
    "step_generate_hardware",
    "step_create_stitched_ip",
    "step_measure_rtlsim_performance",
    "step_out_of_context_synthesis",
    "step_prepare_synthesis",
    "step_synthesize_bitfile",
    "step_make_driver",
    "step_deployment_package",
]
#: The same with FINN+'s own folding search (SetFolding for target_fps) instead of onebit's PE/SIMD.
STEPS_FINN_FOLDING = [s if s != "step_apply_folding_config" else "step_target_fps_parallelization"
                      for s in STEPS_ONEBIT_FOLDING]

#: Attributes copied into folding_config.json when a node carries them (FINN's hw_attrs, abstract ops).
FOLDING_ATTRS = ("PE", "SIMD", "parallel_window", "ram_style", "ram_style_thresholds", "resType", "mem_mode",
                 "runtime_writeable_weights")

FINN_DOMAIN = "finn.custom_op.fpgadataflow"
ONEBIT_DOMAIN = "onebit.export.dataflow.ops"
ENV_PYTHON = "ONEBIT_FINN_PYTHON"
DEFAULT_TIMEOUT_S = 1800
_STDERR_LINES = 15

try:  # the worker runs this file without onebit on the path; there FinnError is a plain RuntimeError
    from onebit.errors import ConfigError, OnebitError, UnsupportedError
except ImportError:  # pragma: no cover - only inside a FINN+ interpreter without onebit
    OnebitError = ConfigError = UnsupportedError = RuntimeError  # type: ignore[misc,assignment]


class FinnError(OnebitError):
    """FINN+ is missing, or failed on a graph (the message carries FINN+'s last error lines)."""


# ================================================================================================
# Graph transformations for the hand-off (need onebit and qonnx, not FINN+)
# ================================================================================================
def _load(graph):
    """A ModelWrapper copy of ``graph`` (a path or a ModelWrapper)."""
    from qonnx.core.modelwrapper import ModelWrapper

    from onebit.export.dataflow.graph import load_dataflow

    if isinstance(graph, ModelWrapper):
        return ModelWrapper(copy.deepcopy(graph.model))
    return load_dataflow(graph)


def channelpad_as_mvau(model, *, ram_style: str = "distributed"):
    """Replace every ChannelPad (onebit's op) by an equivalent FINN MVAU; returns a new model.

    ChannelPad appends ``OutChannels - NumChannels`` zero channels. The MVAU computes ``x @ [I | 0]``
    with ``noActivation=1``: exactly the same integers (one nonzero product per output). It keeps the node's
    name and tensors. Weights are annotated INT2, not BINARY: FINN+'s MVAU_hls rejects BINARY weights
    outside xnor mode, and the RTL MVU needs signed weights of at least 2 bits. (So FINN+'s
    MinimizeWeightBitWidth, which would pick BINARY for 0/1 values, must stay off for these nodes:
    :func:`write_finn_build` sets ``minimize_bit_width=False``.) ``SIMD = NumChannels`` and
    ``PE`` = the ChannelPad's PE keep its cycle count ``H*W*OutChannels/PE``.
    """
    from onnx import helper, numpy_helper
    from qonnx.core.datatype import DataType

    from onebit.export.dataflow.graph import get_op

    model = _load(model)
    nodes = list(model.graph.node)
    for idx, node in enumerate(nodes):
        if node.op_type != "ChannelPad":
            continue
        op = get_op(node)
        c_in, c_out = int(op.attr("NumChannels")), int(op.attr("OutChannels"))
        pe = int(op.attr("PE"))
        idt = op.input_dtype().name
        weights = np.zeros((c_in, c_out), np.float32)
        weights[np.arange(c_in), np.arange(c_in)] = 1.0
        w_name = f"{node.name}_identity_weights"
        model.graph.initializer.append(numpy_helper.from_array(weights, w_name))
        model.set_tensor_datatype(w_name, DataType["INT2"])
        mvau = helper.make_node(
            "MVAU", [node.input[0], w_name], [node.output[0]], name=node.name, domain=FINN_DOMAIN,
            backend="fpgadataflow", MW=c_in, MH=c_out, SIMD=c_in, PE=pe, inputDataType=idt,
            weightDataType="INT2", outputDataType=idt, accDataType=idt, noActivation=1, binaryXnorMode=0,
            numInputVectors=list(op.attr("numInputVectors")), mem_mode="internal_decoupled", ram_style=ram_style,
            resType="lut", ActVal=0)
        model.graph.node.remove(node)
        model.graph.node.insert(idx, mvau)
    return model


def strip_fifos_and_dwcs(model):
    """Remove StreamingFIFO and StreamingDataWidthConverter nodes (identities in value); returns a new model.

    FINN+ inserts and sizes its own FIFOs and width converters (step_generate_hardware: InsertDWC,
    InsertFIFO, FIFO sizing by simulation) after specialization, on the final folding.
    """
    model = _load(model)
    for node in [n for n in model.graph.node if n.op_type in ("StreamingFIFO", "StreamingDataWidthConverter")]:
        src, dst = node.input[0], node.output[0]
        for other in model.graph.node:
            for i, name in enumerate(other.input):
                if name == dst:
                    other.input[i] = src
        for out in model.graph.output:
            if out.name == dst:  # a FIFO at the very end: keep the graph output's name
                producer = model.find_producer(src)
                producer.output[list(producer.output).index(src)] = dst
                for other in model.graph.node:
                    for i, name in enumerate(other.input):
                        if name == src:
                            other.input[i] = dst
        model.graph.node.remove(node)
    return model


def with_scores_output(model):
    """A copy whose graph also outputs the class scores (metadata ``onebit.scores``) as a second output."""
    from onnx import TensorProto, helper

    from onebit.export.dataflow.graph import scores_name

    model = _load(model)
    name = scores_name(model)
    if name in [o.name for o in model.graph.output]:
        return model
    shape = model.get_tensor_shape(name)
    for vi in list(model.graph.value_info):
        if vi.name == name:
            model.graph.value_info.remove(vi)
    model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))
    return model


def prepare_for_finn(model, *, channelpad: str = "mvau", strip_fifos: bool = False):
    """The graph as FINN+ gets it: ChannelPad replaced (``channelpad="mvau"``), kept (``"keep"``: only
    qonnx-level execution can run it, through onebit's own op) or refused (``"error"``)."""
    model = _load(model)
    pads = [n.name for n in model.graph.node if n.op_type == "ChannelPad"]
    if pads and channelpad == "error":
        raise UnsupportedError(
            f"node {pads[0]} (ChannelPad): FINN+ has no op or HLS/RTL backend for appending zero channels; "
            f"hand it over as an MVAU (channelpad='mvau') or provide a custom IP")
    if channelpad == "mvau":
        model = channelpad_as_mvau(model)
    elif channelpad not in ("keep", "error"):
        raise ConfigError(f"channelpad: expected 'mvau', 'keep' or 'error', got {channelpad!r}")
    if strip_fifos:
        model = strip_fifos_and_dwcs(model)
    return model


# ================================================================================================
# The build folder
# ================================================================================================
def folding_config(model) -> dict:
    """FINN's folding configuration for ``model``: ``{"Defaults": {}, node name: {"PE": .., "SIMD": .., ...}}``
    with the folding attributes each HW node carries (FINN's attribute names)."""
    from onnx import helper

    cfg: dict = {"Defaults": {}}
    for node in model.graph.node:
        if not node.domain.startswith(FINN_DOMAIN):
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute if a.name in FOLDING_ATTRS}
        attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
        if attrs:
            cfg[node.name] = {k: attrs[k] for k in FOLDING_ATTRS if k in attrs}
    return cfg


def _resolve_target(board: str | None, fpga_part: str | None, shell_flow_type: str | None):
    if board is None and fpga_part is None:
        raise ConfigError(f"FINN+ build: give a board ({', '.join(BOARDS)}) or an FPGA part (e.g. {DEFAULT_PART})")
    shell = None
    if board is not None:
        if board not in BOARDS:
            raise ConfigError(f"FINN+ build: unknown board {board!r}; FINN+ 1.6.1 knows {', '.join(BOARDS)} "
                              f"(or give fpga_part instead)")
        part, shell = BOARDS[board]
        if fpga_part is not None and fpga_part != part:
            raise ConfigError(f"FINN+ build: board {board} has part {part}, but fpga_part={fpga_part!r}")
    if shell_flow_type is not None:
        if shell_flow_type not in ("vivado_zynq", "vitis_alveo"):
            raise ConfigError(f"FINN+ build: shell_flow_type: expected vivado_zynq or vitis_alveo, got "
                              f"{shell_flow_type!r}")
        if board is None:
            raise ConfigError("FINN+ build: a shell flow (bitfile) needs a board, not only an FPGA part")
        shell = shell_flow_type
    return shell


BUILD_PY = """#!/usr/bin/env python3
\"\"\"FINN+ build of onebit's dataflow graph (written by onebit.export.finn_interop.write_finn_build).

    python build.py                  # the full build through FINN+'s CLI `finn build` (needs Vivado, Vitis HLS)
    python build.py --estimate-only  # FINN+'s cycle and resource estimates only (no Vivado needed)
    python build.py --check          # check the configuration against the installed FINN+ (no Vivado needed)

Other arguments go to `finn build` (e.g. --batch, --skip-dep-update, --stop STEP). model.onnx is already a
graph of FINN+ HW layers, so the steps start at step_create_dataflow_partition; folding_config.json holds
onebit's folding (PE, SIMD) and dataflow_build_config.json the build options.
\"\"\"

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "dataflow_build_config.json"
MODEL = HERE / "model.onnx"
ESTIMATE_END = "step_generate_estimate_reports"


def load_config():
    \"\"\"The DataflowBuildConfig, checked: known keys, existing folding config, every step name resolves.\"\"\"
    # Outside `finn build` FINN+ takes its settings from the environment (its build dir for generated code).
    os.environ.setdefault("FINN_BUILD_DIR", str(HERE / "build_output" / "finn_tmp"))
    try:
        import finn.xsi
    except ImportError as e:
        sys.exit(f"error: FINN+ is not importable ({e}); pip install finn-plus (see onebit's DEVELOPERS.md)")
    if "XILINX_VIVADO" not in os.environ:
        # Importing FINN+'s builder binds finn.xsi's simulator, which needs Vivado. Without Vivado only the
        # steps up to the estimate reports can run, and they never simulate: bind the names to None.
        for name in finn.xsi._LAZY_NAMES:
            setattr(finn.xsi, name, None)
    from finn.builder.build_dataflow import resolve_build_steps
    from finn.builder.build_dataflow_config import DataflowBuildConfig

    cfg = DataflowBuildConfig.construct_from(CONFIG)
    if not Path(cfg.output_dir).is_absolute():
        cfg.output_dir = str(HERE / cfg.output_dir)
    resolve_build_steps(cfg, partial=False)
    return cfg


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--estimate-only", action="store_true",
                        help="run the steps up to " + ESTIMATE_END + " in this process (no Vivado)")
    parser.add_argument("--check", action="store_true", help="check the configuration and exit")
    args, finn_args = parser.parse_known_args(argv)
    if args.check or args.estimate_only:
        cfg = load_config()
        if args.check:
            print(f"ok: {CONFIG.name} is a valid FINN+ DataflowBuildConfig; steps: {', '.join(cfg.steps)}")
            return 0
        from finn.builder.build_dataflow import build_dataflow_cfg

        # FINN+ reads XILINX_VIVADO at the end only to record the tool version in the reports.
        os.environ.setdefault("XILINX_VIVADO", "none")
        cfg.stop_step = ESTIMATE_END
        status = build_dataflow_cfg(str(MODEL), cfg)
        out = Path(cfg.output_dir)
        print(f"estimates written to {out / 'report'}" if status == 0 else
              f"FINN+ build failed; see {out / 'build_dataflow.log'}")
        return 0 if status == 0 else 1
    if importlib.util.find_spec("finn") is None:
        sys.exit(f"error: FINN+ is not installed for {sys.executable}; pip install finn-plus (see onebit's "
                 f"DEVELOPERS.md)")
    if "XILINX_VIVADO" not in os.environ:
        sys.exit("error: the full build needs Vivado and Vitis HLS: source their settings64.sh first "
                 "(or run with --estimate-only)")
    # FINN+'s CLI (`finn build`) sets up its HLS/RTL libraries and the Vivado environment, then builds.
    return subprocess.call([sys.executable, "-m", "finn.interface.run_finn", "build", str(CONFIG), str(MODEL),
                            *finn_args])


if __name__ == "__main__":
    sys.exit(main())
"""


def write_finn_build(dataflow_path, out_dir, *, board: str | None = None, fpga_part: str | None = None,
                     shell_flow_type: str | None = None, clock_mhz: float = 100.0, target_fps: int | None = None,
                     folding: str = "onebit", outputs: list[str] | None = None,
                     channelpad: str = "mvau") -> dict[str, Path]:
    """Write a FINN+ build folder for the dataflow graph ``dataflow_path``; returns its files by role.

    - ``model.onnx``: the graph as FINN+ gets it: ChannelPad as an MVAU (:func:`channelpad_as_mvau`;
      ``channelpad="error"`` refuses instead), onebit's FIFOs/width converters removed (FINN+ inserts and
      sizes its own), nodes named as FINN+'s GiveUniqueNodeNames names them (``MVAU_0``, ...);
    - ``folding_config.json``: the graph's PE/SIMD (and memory styles) in FINN's format, keyed by those
      names, applied by ``step_apply_folding_config`` before ``step_specialize_layers``;
    - ``dataflow_build_config.json``: a FINN+ ``DataflowBuildConfig``; the steps start at
      ``step_create_dataflow_partition`` (the graph is already converted to HW layers);
    - ``build.py``: runs it (``python build.py``; ``--estimate-only`` needs no Vivado);
    - ``onebit_handoff.json``: what was changed for FINN+ and the names of onebit's nodes.

    ``board`` (FINN+'s names, :data:`BOARDS`) or ``fpga_part`` picks the device; a board also picks the
    shell flow (``vivado_zynq`` or ``vitis_alveo``) and so the bitfile and driver outputs. ``folding``:
    ``"onebit"`` applies the graph's folding; ``"finn"`` lets FINN+'s SetFolding choose PE/SIMD for
    ``target_fps`` instead.
    """
    from qonnx.transformation.general import GiveUniqueNodeNames

    from onebit.atomic import write_bytes, write_json

    if clock_mhz <= 0:
        raise ConfigError(f"FINN+ build: clock_mhz must be positive, got {clock_mhz}")
    if folding not in ("onebit", "finn"):
        raise ConfigError(f"FINN+ build: folding: expected 'onebit' or 'finn', got {folding!r}")
    if folding == "finn" and not target_fps:
        raise ConfigError("FINN+ build: folding='finn' needs target_fps (FINN+'s SetFolding targets it)")
    if target_fps is not None and target_fps <= 0:
        raise ConfigError(f"FINN+ build: target_fps must be positive, got {target_fps}")
    shell = _resolve_target(board, fpga_part, shell_flow_type)
    if outputs is None:
        outputs = ["estimate_reports", "stitched_ip", "rtlsim_performance", "out_of_context_synth"]
        if shell is not None:
            outputs += ["bitfile", "pynq_driver", "deployment_package"]
    bad = [o for o in outputs if o not in OUTPUTS]
    if bad:
        raise ConfigError(f"FINN+ build: unknown outputs {bad}; expected some of {', '.join(OUTPUTS)}")
    if shell is None and any(o in outputs for o in ("bitfile", "pynq_driver", "cpp_driver", "deployment_package")):
        raise ConfigError("FINN+ build: bitfile/driver outputs need a board with a shell flow")
    if "out_of_context_synth" in outputs and "stitched_ip" not in outputs:
        raise ConfigError("FINN+ build: out_of_context_synth needs stitched_ip")

    source = _load(dataflow_path)
    onebit_names = [n.name for n in source.graph.node]
    pads = [n.name for n in source.graph.node if n.op_type == "ChannelPad"]
    model = prepare_for_finn(source, channelpad=channelpad, strip_fifos=True)
    kept = {n.output[0]: n.name for n in model.graph.node}
    model = model.transform(GiveUniqueNodeNames())  # FINN+'s own naming: the folding config keys stay valid
    foreign = [f"{n.name} ({n.op_type}, {n.domain})" for n in model.graph.node if n.domain != FINN_DOMAIN]
    if foreign:
        raise UnsupportedError(f"FINN+ build: layers FINN+ cannot build: {', '.join(foreign)}")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"model": out / "model.onnx", "folding_config": out / "folding_config.json",
             "build_config": out / "dataflow_build_config.json", "build_script": out / "build.py",
             "handoff": out / "onebit_handoff.json"}
    write_bytes(files["model"], model.model.SerializeToString())

    config: dict = {
        "output_dir": "build_output",
        "synth_clk_period_ns": round(1000.0 / clock_mhz, 6),
        "generate_outputs": list(outputs),
        "steps": list(STEPS_ONEBIT_FOLDING if folding == "onebit" else STEPS_FINN_FOLDING),
        # onebit's data types are exact (per-channel ranges). FINN+'s value-based minimization would turn
        # the ±1 (BIPOLAR) weights into INT2 and the ChannelPad MVAU's 0/1 weights into BINARY, which its
        # MVAU_hls cannot build. RoundAndClipThresholds still runs (step_minimize_bit_width).
        "minimize_bit_width": False,
        "auto_fifo_depths": True,
        "save_intermediate_models": True,
    }
    if board is not None:
        config["board"] = board
    else:
        config["fpga_part"] = fpga_part
    if shell is not None:
        config["shell_flow_type"] = shell
    if target_fps:
        config["target_fps"] = int(target_fps)
    if folding == "onebit":
        config["folding_config_file"] = files["folding_config"].name
        write_json(files["folding_config"], folding_config(model))
    elif files["folding_config"].exists():
        files["folding_config"].unlink()
    write_json(files["build_config"], config)
    write_bytes(files["build_script"], BUILD_PY.encode())
    files["build_script"].chmod(0o755)

    renamed = {kept[n.output[0]]: n.name for n in model.graph.node}
    write_json(files["handoff"], {
        "source": str(dataflow_path) if not hasattr(dataflow_path, "graph") else None,
        "finn_plus_checked": "1.6.1",
        "node_names": {name: renamed.get(name) for name in onebit_names},
        "channelpad": [f"{name} -> MVAU {renamed[name]} (weights [I | 0], INT2, noActivation=1)"
                       for name in pads if name in renamed],
        "removed": [name for name in onebit_names if name not in renamed],
        "notes": ["FINN+ inserts and sizes its own FIFOs and data-width converters (auto_fifo_depths).",
                  "minimize_bit_width is off: onebit's data types are already exact; FINN+ would make the "
                  "BIPOLAR weights INT2 and the ChannelPad MVAU's 0/1 weights BINARY (MVAU_hls cannot build "
                  "those)."],
    })
    if folding == "finn":
        files.pop("folding_config")
    return files


README_PARAGRAPH = """\
**Building a bitfile with FINN+.** `onebit.export.finn_interop.write_finn_build("dataflow.onnx", "finn_build",
board="Pynq-Z2", clock_mhz=100)` writes a FINN+ build folder: `model.onnx` (the dataflow graph; the shortcut's
ChannelPad, which FINN+ has no layer for, becomes an equivalent MVAU), `folding_config.json` (onebit's PE/SIMD in
FINN's format), `dataflow_build_config.json` (FINN+'s `DataflowBuildConfig`) and `build.py`. On a machine with
Vivado and Vitis HLS (their `settings64.sh` sourced), install FINN+ with the recipe in DEVELOPERS.md (FINN+ 1.6.1
with `--no-deps`, then its builder dependencies, including `bitstring<4.4`) and run `python build.py` in that
folder. It calls FINN+'s `finn build dataflow_build_config.json model.onnx`, which fetches FINN+'s HLS and RTL
libraries on first use and writes the stitched IP, the bitfile and a PYNQ driver under `build_output/`.
`python build.py --estimate-only` needs no Vivado: it writes FINN+'s cycle and resource estimates under
`build_output/report/`.
"""


# ================================================================================================
# Running FINN+: in this process, or in another interpreter
# ================================================================================================
_IN_PROCESS: bool | None = None


def _finn_in_process() -> bool:
    global _IN_PROCESS
    if _IN_PROCESS is None:
        try:
            if importlib.util.find_spec("finn") is None:
                _IN_PROCESS = False
            else:
                import finn.core.onnx_exec  # noqa: F401  (needs FINN+'s rich and termcolor too)
                import finn.transformation.fpgadataflow.specialize_layers  # noqa: F401

                _IN_PROCESS = True
        except Exception:
            _IN_PROCESS = False
    return _IN_PROCESS


def finn_python() -> str | None:
    """The interpreter that runs FINN+: ``None`` for this process, else the path from ``ONEBIT_FINN_PYTHON``.

    Raises FinnError when neither works.
    """
    env = os.environ.get(ENV_PYTHON, "").strip()
    if env:
        if not (Path(env).is_file() and os.access(env, os.X_OK)):
            raise FinnError(f"{ENV_PYTHON}={env}: not an executable Python interpreter")
        return env
    if _finn_in_process():
        return None
    raise FinnError(f"FINN+ not installed; see DEVELOPERS.md (install finn-plus here, or set {ENV_PYTHON} to "
                    f"the python of an environment that has it)")


def finn_available() -> tuple[bool, str]:
    """``(True, where)`` if FINN+ can run (in process or through ``ONEBIT_FINN_PYTHON``), else ``(False, why)``."""
    try:
        python = finn_python()
    except FinnError as e:
        return False, str(e)
    if python is None:
        return True, "in process"
    try:
        proc = subprocess.run([python, "-c", "import finn.core.onnx_exec"], capture_output=True, text=True,
                              timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"{ENV_PYTHON}={python}: {e}"
    if proc.returncode != 0:
        return False, f"{ENV_PYTHON}={python} cannot import FINN+: {_tail(proc.stderr, 3)}"
    return True, python


def _tail(text: str, n: int = _STDERR_LINES) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return " | ".join(lines[-n:]) if lines else "(no output)"


_BOOT = "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"


def _run_worker(python: str | None, command: str, args: dict, timeout: float) -> None:
    if python is None:
        try:
            WORKERS[command](**args)
        except Exception as e:
            raise FinnError(f"FINN+ {command} failed: {type(e).__name__}: {str(e).strip()[:500]}") from e
        return
    workdir = Path(args["out_path"]).parent
    cmd = [python, "-c", _BOOT, str(Path(__file__).resolve()), command, json.dumps(args)]
    try:
        proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        raise FinnError(f"FINN+ ({python}) {command}: no result after {timeout:.0f} s; last output: "
                        f"{_tail(err)}") from None
    except OSError as e:
        raise FinnError(f"FINN+ ({python}) {command}: cannot start ({e})") from None
    if proc.returncode != 0:
        raise FinnError(f"FINN+ ({python}) {command} failed (exit {proc.returncode}): {_tail(proc.stderr)}")


def finn_execute_tensors(dataflow_path, frames: np.ndarray, names: list[str] | None = None, *,
                         channelpad: str = "mvau", timeout: float = DEFAULT_TIMEOUT_S) -> dict[str, np.ndarray]:
    """FINN+'s Python execution of the graph on ``frames`` (N, H, W, C), one frame at a time (FINN's sliding
    window is batch 1). Returns ``{tensor: (N, ...)}`` for ``names`` (default: the graph outputs)."""
    from onebit.export.dataflow.graph import check_frames

    python = finn_python()
    model = prepare_for_finn(dataflow_path, channelpad=channelpad)
    x = check_frames(model, np.asarray(frames), source="FINN+ frames")
    names = list(names) if names is not None else [o.name for o in model.graph.output]
    known = set(model.get_all_tensor_names())
    missing = [n for n in names if n not in known]
    if missing:
        raise UnsupportedError(f"FINN+ execution: no tensors {missing} in the graph")
    with tempfile.TemporaryDirectory(prefix="onebit-finn-") as tmp:
        tmp = Path(tmp)
        model.save(str(tmp / "model.onnx"))
        np.save(tmp / "frames.npy", x)
        _run_worker(python, "execute", {"model_path": str(tmp / "model.onnx"), "frames_path": str(tmp / "frames.npy"),
                                "names": names, "out_path": str(tmp / "out.npz")}, timeout)
        with np.load(tmp / "out.npz", allow_pickle=False) as data:
            return {name: data[f"t{i}"] for i, name in enumerate(names)}


def finn_execute(dataflow_path, frames: np.ndarray, *, channelpad: str = "mvau",
                 timeout: float = DEFAULT_TIMEOUT_S) -> np.ndarray:
    """FINN+'s Python execution of the graph's (first) output on ``frames`` (N, H, W, C): shape (N, ...)."""
    from onebit.export.graphs import load_model

    model = dataflow_path if hasattr(dataflow_path, "graph") else load_model(dataflow_path)
    name = model.graph.output[0].name
    return finn_execute_tensors(dataflow_path, frames, [name], channelpad=channelpad, timeout=timeout)[name]


def finn_exp_cycles(dataflow_path, fpga_part: str = DEFAULT_PART, *, channelpad: str = "mvau",
                    timeout: float = DEFAULT_TIMEOUT_S) -> dict[str, dict]:
    """FINN+'s ``exp_cycles_per_layer`` on a ``SpecializeLayers(fpga_part)`` copy of the graph.

    Returns ``{onebit node name: {"finn_op": "MVAU_hls", "cycles": n}}``, matched through the nodes' output
    tensors (specialization renames the nodes). A ChannelPad appears as its MVAU substitute; with
    ``channelpad="keep"`` it is absent (FINN+ does not visit onebit's own ops).
    """
    python = finn_python()
    model = prepare_for_finn(dataflow_path, channelpad=channelpad)
    with tempfile.TemporaryDirectory(prefix="onebit-finn-") as tmp:
        tmp = Path(tmp)
        model.save(str(tmp / "model.onnx"))
        _run_worker(python, "exp_cycles", {"model_path": str(tmp / "model.onnx"), "fpga_part": fpga_part,
                                   "out_path": str(tmp / "out.json")}, timeout)
        return json.loads((tmp / "out.json").read_text())


# ================================================================================================
# The worker: runs where FINN+ is importable (this process or ONEBIT_FINN_PYTHON)
# ================================================================================================
def _require_onebit_ops(model) -> None:
    if any(n.domain == ONEBIT_DOMAIN for n in model.graph.node) and importlib.util.find_spec("onebit") is None:
        raise RuntimeError("the graph holds onebit's own ops (ChannelPad), but this FINN+ interpreter cannot "
                           "import onebit; use channelpad='mvau' or install onebit here")


def _worker_execute(model_path: str, frames_path: str, names: list[str], out_path: str) -> None:
    from finn.core.onnx_exec import execute_onnx
    from qonnx.core.modelwrapper import ModelWrapper

    model = ModelWrapper(model_path)
    _require_onebit_ops(model)
    frames = np.load(frames_path, allow_pickle=False)
    in_name = model.graph.input[0].name
    full = any(n not in [o.name for o in model.graph.output] for n in names)
    got: dict[str, list] = {n: [] for n in names}
    for frame in frames:  # FINN's ConvolutionInputGenerator is batch 1
        ctx = execute_onnx(model, {in_name: frame[None].astype(np.float32)}, return_full_exec_context=full)
        for n in names:
            got[n].append(np.asarray(ctx[n], np.float32))
    np.savez(out_path, **{f"t{i}": np.concatenate(got[n]) for i, n in enumerate(names)})


def _worker_exp_cycles(model_path: str, fpga_part: str, out_path: str) -> None:
    from finn.analysis.fpgadataflow.exp_cycles_per_layer import exp_cycles_per_layer
    from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers
    from qonnx.core.modelwrapper import ModelWrapper

    model = ModelWrapper(model_path)
    by_output = {n.output[0]: n.name for n in model.graph.node}
    special = model.transform(SpecializeLayers(fpga_part))
    cycles = special.analysis(exp_cycles_per_layer)
    result = {by_output[n.output[0]]: {"finn_op": n.op_type, "cycles": int(cycles[n.name])}
              for n in special.graph.node if n.name in cycles}
    Path(out_path).write_text(json.dumps(result, indent=1))


WORKERS = {"execute": _worker_execute, "exp_cycles": _worker_exp_cycles}


if __name__ == "__main__":  # the worker entry: finn_interop.py COMMAND JSON-ARGS
    WORKERS[sys.argv[1]](**json.loads(sys.argv[2]))
