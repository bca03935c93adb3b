"""The FINN+ hand-off: the graph rewrites FINN+ needs, and a FINN+ build folder for a dataflow graph.

FINN+ (``pip install finn-plus``, checked against 1.6.1) builds the bitfile on a machine with Vivado;
:func:`write_finn_build` writes its input (the graph, ``folding_config.json``, ``dataflow_build_config.json``
and ``build.py``) and needs no FINN+ at all. Running FINN+ itself (for cross-checks) is
:mod:`onebit.export.finn_worker`.

onebit's graph is FINN's format except for one op: ``ChannelPad`` (the shortcut's appended zero channels)
has no FINN+ op and no HLS/RTL backend. For FINN+ it is replaced by :func:`channelpad_as_mvau`, an MVAU
with the 0/1 weight matrix ``[I | 0]`` (INT2, ``noActivation=1``): the same values, a few LUTs more.
onebit's FIFOs and width converters are removed (:class:`~onebit.export.dataflow.insert.RemoveStreamNodes`,
the graph output's included): FINN+ inserts and sizes its own.
"""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.general import GiveUniqueNodeNames

from onebit.atomic import make_folder, write_bytes, write_json
from onebit.errors import ConfigError, UnsupportedError
from onebit.export.dataflow.base import FINN_DOMAIN
from onebit.export.dataflow.graph import get_op, load_dataflow, scores_name
from onebit.export.dataflow.insert import RemoveStreamNodes

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


def _load(graph):
    """A ModelWrapper copy of ``graph`` (a path or a ModelWrapper)."""
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


def with_scores_output(model):
    """A copy whose graph also outputs the class scores (metadata ``onebit.scores``) as a second output."""
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
        raise ConfigError(f"channelpad: expected 'mvau', 'keep' or 'error', got {channelpad!r}", param="channelpad")
    if strip_fifos:
        RemoveStreamNodes(at_output="remove").apply(model)
    return model


def folding_config(model) -> dict:
    """FINN's folding configuration for ``model``: ``{"Defaults": {}, node name: {"PE": .., "SIMD": .., ...}}``
    with the folding attributes each HW node carries (FINN's attribute names)."""
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
        raise ConfigError(f"board: give a FINN+ board ({', '.join(BOARDS)}) or an FPGA part (fpga_part, e.g. "
                          f"{BOARDS['ZCU104'][0]})", param="board")
    shell = None
    if board is not None:
        if board not in BOARDS:
            raise ConfigError(f"board: unknown board {board!r}; FINN+ 1.6.1 knows {', '.join(BOARDS)} "
                              f"(or give fpga_part instead)", param="board")
        part, shell = BOARDS[board]
        if fpga_part is not None and fpga_part != part:
            raise ConfigError(f"fpga_part: board {board} has part {part}, got {fpga_part!r}", param="fpga_part")
    if shell_flow_type is not None:
        if shell_flow_type not in ("vivado_zynq", "vitis_alveo"):
            raise ConfigError(f"shell_flow_type: expected vivado_zynq or vitis_alveo, got {shell_flow_type!r}",
                              param="shell_flow_type")
        if board is None:
            raise ConfigError("shell_flow_type: a shell flow (bitfile) needs a board, not only an FPGA part",
                              param="shell_flow_type")
        shell = shell_flow_type
    return shell


#: The generated build.py, a package-data file; what varies goes into dataflow_build_config.json.
BUILD_SCRIPT = "templates/finn_build.py"


def build_script() -> bytes:
    """The text of the build folder's ``build.py``."""
    return resources.files("onebit.export").joinpath(BUILD_SCRIPT).read_bytes()


def check_build_options(*, board: str | None = None, fpga_part: str | None = None,
                        shell_flow_type: str | None = None, clock_mhz: float = 100.0, target_fps: int | None = None,
                        folding: str = "onebit", outputs: list[str] | None = None) -> tuple[str | None, list[str]]:
    """The shell flow and the outputs of a build with :func:`write_finn_build`'s options; a ConfigError naming
    the parameter for a bad one. A front end calls it before a long export, so that a typo fails first."""
    if clock_mhz <= 0:
        raise ConfigError(f"clock_mhz: expected a positive number, got {clock_mhz}", param="clock_mhz")
    if folding not in ("onebit", "finn"):
        raise ConfigError(f"folding: expected 'onebit' or 'finn', got {folding!r}", param="folding")
    if folding == "finn" and not target_fps:
        raise ConfigError("target_fps: folding='finn' needs it (FINN+'s SetFolding targets it)", param="target_fps")
    if target_fps is not None and target_fps <= 0:
        raise ConfigError(f"target_fps: expected a positive number, got {target_fps}", param="target_fps")
    shell = _resolve_target(board, fpga_part, shell_flow_type)
    if outputs is None:
        outputs = ["estimate_reports", "stitched_ip", "rtlsim_performance", "out_of_context_synth"]
        if shell is not None:
            outputs += ["bitfile", "pynq_driver", "deployment_package"]
    bad = [o for o in outputs if o not in OUTPUTS]
    if bad:
        raise ConfigError(f"outputs: unknown {bad}; expected some of {', '.join(OUTPUTS)}", param="outputs")
    if shell is None and any(o in outputs for o in ("bitfile", "pynq_driver", "cpp_driver", "deployment_package")):
        raise ConfigError("outputs: bitfile/driver outputs need a board with a shell flow", param="outputs")
    if "out_of_context_synth" in outputs and "stitched_ip" not in outputs:
        raise ConfigError("outputs: out_of_context_synth needs stitched_ip", param="outputs")
    return shell, outputs


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
    shell, outputs = check_build_options(board=board, fpga_part=fpga_part, shell_flow_type=shell_flow_type,
                                         clock_mhz=clock_mhz, target_fps=target_fps, folding=folding,
                                         outputs=outputs)
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
    make_folder(out)
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
    write_bytes(files["build_script"], build_script())
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
**Building a bitfile with FINN+.** `onebit.export.finn_handoff.write_finn_build("dataflow.onnx", "finn_build",
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


