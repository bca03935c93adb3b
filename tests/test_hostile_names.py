"""Node and tensor names are user text: none of it may reach generated Verilog, scripts or file names as code.

A name holding a newline once ended the comment it was written into, and the next line (``initial
$system(...)``) ran in Verilator. The graph below names its nodes and tensors with newlines, ``*/``, quotes,
backslashes, unicode and ``$system`` calls, with pairs that collide once sanitised."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from hwkit import assert_cosim, dataflow_graph
from onebit.errors import ConfigError, GraphError
from onebit.export.dataflow.base import FINN_DOMAIN, make_node
from onebit.export.dataflow.ops import DuplicateStreams, Thresholding
from onebit.export.graphs import load_onnx
from onebit.hw import synth
from onebit.hw.idents import IDENT, KEYWORDS, MAX_LEN, comment, verilog_idents
from onebit.hw.top import generate
from onnx import helper

PWN = 'initial $system("touch PWNED");'
LONG = "L" * 70
NAMES = {
    "dup": f"{LONG}\n{PWN}\n// ",  # the same as "add" in the first 40 characters
    "thr_a": "a-b",
    "thr_b": "a_b",  # "a-b" sanitised
    "add": f"{LONG}*/ {PWN} /* \"q\" \\ é∑ \r\n{PWN}",
}
TENSORS = {"x": f"x\n{PWN}", "d0": "d0 */ \"\\", "d1": f"d1\u2028{PWN}", "a": "ä\n`define X", "b": "b\r\n$finish;",
           "y": f"{LONG}\n{PWN}"}


def hostile_graph():
    c, pe, h, w, in_dt, steps, thr_dt = 4, 2, 2, 3, "INT4", 3, "INT3"
    shape = (1, h, w, c)
    t = TENSORS
    rng = np.random.default_rng(5)
    inits = {f"{n} thresholds\n{PWN}": np.sort(rng.integers(-9, 10, (c, steps)), axis=1) for n in ("a", "b")}
    ta, tb = inits
    nodes = [make_node(DuplicateStreams, [t["x"]], [t["d0"], t["d1"]], NAMES["dup"], NumChannels=c, PE=pe,
                       NumOutputStreams=2, inputDataType=in_dt, numInputVectors=[1, h, w])]
    for name, src, dst, thr in ((NAMES["thr_a"], t["d0"], t["a"], ta), (NAMES["thr_b"], t["d1"], t["b"], tb)):
        nodes.append(make_node(Thresholding, [src, thr], [dst], name, PE=pe, NumChannels=c, numSteps=steps,
                               inputDataType=in_dt, weightDataType="INT32", outputDataType=thr_dt,
                               numInputVectors=[1, h, w], ActVal=-1))
    nodes.append(helper.make_node("ElementwiseAdd", [t["a"], t["b"]], [t["y"]], name=NAMES["add"], domain=FINN_DOMAIN,
                                  lhs_dtype=thr_dt, rhs_dtype=thr_dt, out_dtype="INT4", lhs_shape=list(shape),
                                  rhs_shape=list(shape), out_shape=list(shape), PE=pe))
    dtypes = {t["d0"]: in_dt, t["d1"]: in_dt, t["a"]: thr_dt, t["b"]: thr_dt}
    return dataflow_graph(nodes, (t["x"], shape, in_dt), (t["y"], shape, "INT4"), inits, dtypes)


def _raw_texts(model) -> list[str]:
    """Every name in the graph and each line of it (a line of a name must not turn up either), but those
    that are identifiers already."""
    names = [n.name for n in model.graph.node] + [i.name for i in model.graph.initializer] + list(TENSORS.values())
    parts = set(names)
    for n in names:
        parts.update(p for p in re.split(r"[\r\n\u2028]+", n) if len(p) >= 6)
    return sorted(p for p in parts if not IDENT.fullmatch(p))  # "a_b" may stay as it is


def test_generated_files_carry_no_name_text(tmp_path):
    model = hostile_graph()
    design = generate(model, tmp_path)
    rtl = design.rtl
    files = [p for p in rtl.rglob("*") if p.is_file()]
    for p in files:
        assert re.fullmatch(r"[A-Za-z0-9_./]+", str(p.relative_to(rtl))), p
        if p.name == "design.json":
            continue
        text = p.read_text()
        assert "$system" not in text and '"touch' not in text and "`define X" not in text, p
        assert text.isascii(), p
        for raw in _raw_texts(model):
            assert raw not in text, (p.name, raw)
    top = (rtl / "onebit_top.v").read_text()
    assert "*/" not in top and "/*" not in top

    idents = [layer.ident for layer in design.layers]
    assert len({i.lower() for i in idents}) == len(idents) == 4
    for i in idents:
        assert IDENT.fullmatch(i) and len(i) <= MAX_LEN and i not in KEYWORDS, i
        assert re.search(rf"^    onebit_\w+ #\(.*\) {i} \($", top, re.MULTILINE), i

    mems = {layer.ident: {p.name for p in (rtl / "mem").glob(f"{layer.ident}_t_*.mem")}
            for layer in design.layers if "MEM" in layer.params()}
    assert len(mems) == 2 and all(mems.values()) and not set.intersection(*mems.values())
    assert sum(len(v) for v in mems.values()) == len(list((rtl / "mem").iterdir()))
    for layer in design.layers:
        for v in layer.params().values():
            assert not isinstance(v, str) or re.fullmatch(r"[A-Za-z0-9_/.]+", v)

    meta = json.loads((rtl / "design.json").read_text())  # keeps the names, as JSON strings
    assert sorted(entry["name"] for entry in meta["layers"]) == sorted(NAMES.values())
    assert [entry["instance"] for entry in meta["layers"]] == idents


def test_idents_sanitised_bounded_distinct():
    names = ["a-b", "a_b", "A_B", "module", "wire", "clk", "e0_valid", "fifo3", "3x", "", "é", LONG + "1",
             LONG + "2", "n_clk", "MVAU_0"]
    ids = verilog_idents(names)
    assert len({i.lower() for i in ids}) == len(ids)
    for i in ids:
        assert IDENT.fullmatch(i) and len(i) <= MAX_LEN and i.lower() not in KEYWORDS, i
    assert ids[0] == "a_b" and ids[-1] == "MVAU_0"  # ordinary names are kept
    assert ids[3] != "module" and ids[5] != "clk" and not ids[8][0].isdigit()
    assert "\n" not in comment("a\nb\r*/") and "*/" not in comment("a*/b") and comment("ä").isascii()


@pytest.mark.slow
def test_hostile_names_cosimulate_exactly(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_cosim(hostile_graph(), tmp_path / "build", frames=2)
    assert not list(tmp_path.rglob("PWNED"))
    assert not Path(os.getcwd(), "PWNED").exists()


def test_synth_refuses_edited_design_json(tmp_path):
    design = generate(hostile_graph(), tmp_path)
    meta = json.loads((design.rtl / "design.json").read_text())
    meta["files"].append('x.v"; shell touch PWNED; #.v')
    (design.rtl / "design.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="not a Verilog file name"):
        synth.synthesize(design.rtl, out_dir=tmp_path / "synth")
    with pytest.raises(ConfigError, match="out_dir"):
        synth.synthesize(design, out_dir=tmp_path / 'a"b\nc')


def _save(model, path: Path) -> Path:
    onnx.save(model.model, str(path))
    return path


def test_checker_skips_only_known_custom_domains(tmp_path):
    model = hostile_graph()  # FINN-domain nodes, the domain not imported: loads
    assert len(load_onnx(_save(model, tmp_path / "ok.onnx")).graph.node) == 4
    model.graph.node[0].domain = "com.example.custom"  # "custom" and "domain" in the error: still an error
    with pytest.raises(GraphError, match=r"bad\.onnx: invalid ONNX model \(No opset import for domain") as e:
        load_onnx(_save(model, tmp_path / "bad.onnx"))
    assert "\n" not in str(e.value)
    model = hostile_graph()
    model.graph.node.append(helper.make_node("Relu", ["p", "q"], ["r"], name="relu"))  # Relu takes one input
    with pytest.raises(GraphError, match=r"relu\.onnx: invalid ONNX model"):
        load_onnx(_save(model, tmp_path / "relu.onnx"))
