"""`onebit run`: the configuration (TOML, YAML, flags, the saved run.toml), stage stamps (skip, re-run, resume),
the verdict table, and the whole flow end to end on the digits: killed mid-training, resumed, every stage run,
the HTML report, and a second run that skips every stage."""

from __future__ import annotations

import base64
import binascii
import io
import json
import shutil
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from onebit.errors import ConfigError
from onebit.flow import config
from onebit.flow.cli import resolve_config
from onebit.flow.engine import Context, Stage, locked, read_stamp, run_stages, stamp_path
from onebit.flow.stages import STAGE_NAMES
from onebit.flow.verify import FAIL, PASS, SKIP, WARN, export_rows, format_checks, hw_rows, summary_line, verdict
from testkit import call

HW_CFG = {"device": "ecp5-25k", "clock_mhz": 50.0, "frames": 2, "synth": True, "pnr": True}


def assert_one_error_line(code: int, err: str, *named: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for thing in named:
        assert thing in lines[0], (thing, lines[0])


# ----- configuration ---------------------------------------------------------------------------------------
def test_defaults_are_the_embedded_default():
    cfg = config.merge()
    assert cfg["data"]["dataset"] == "digits"
    assert (cfg["model"]["arch"], cfg["model"]["act"], cfg["model"]["abits"]) == ("tiny", "srelu", 4)
    assert config.train_config(cfg).epochs is None  # `onebit train`'s default schedule


def test_toml_then_flags(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[train]\nepochs = 3\nlr = 1\n[fold]\ntarget_fps = 500\n[hw]\nclock_mhz = 40\n')
    cfg = resolve_config(tmp_path / "out", str(f), {"epochs": None, "target_fps": 800.0}, print)
    assert cfg["train"]["epochs"] == 3 and cfg["train"]["lr"] == 1.0 and isinstance(cfg["train"]["lr"], float)
    assert cfg["fold"]["target_fps"] == 800.0  # the flag wins
    assert cfg["hw"]["clock_mhz"] == 40.0 and config.device(cfg) == "ecp5-25k"


def test_yaml_equals_toml(tmp_path):
    (tmp_path / "c.toml").write_text('[model]\nact = "bn-relu"\nabits = 2\n[train]\nsgdr = [1, 2]\n')
    (tmp_path / "c.yaml").write_text("model:\n  act: bn-relu\n  abits: 2\ntrain:\n  sgdr: [1, 2]\n")
    assert config.load_file(tmp_path / "c.toml") == config.load_file(tmp_path / "c.yaml")


def test_saved_toml_repeats_the_configuration(tmp_path):
    cfg = config.merge(config.check({"train": {"epochs": 2, "sgdr": [1, 1]}, "fold": {"max_luts": 20000}}, "t"))
    (tmp_path / "run.toml").write_text(config.to_toml(cfg))
    assert config.merge(config.load_file(tmp_path / "run.toml")) == cfg


def test_run_folder_config_is_the_base(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "run.toml").write_text("[train]\nepochs = 7\n[hw]\nframes = 3\n")
    lines = []
    cfg = resolve_config(out, None, {"epochs": 2}, lines.append)
    assert cfg["train"]["epochs"] == 2 and cfg["hw"]["frames"] == 3
    assert "run.toml" in lines[0]


@pytest.mark.parametrize("text, named", [
    ("[trian]\nepochs = 2\n", ["c.toml", "[trian]"]),
    ("[train]\nepoch = 2\n", ["c.toml", "[train]", "'epoch'"]),
    ('[train]\nepochs = "2"\n', ["c.toml", "epochs", "integer"]),
    ("[hw]\npnr = 1\n", ["c.toml", "pnr", "true or false"]),
    ("[train\n", ["c.toml", "TOML"]),
    ("[model]\nabits = 0\n", ["abits", "1..8"]),
    ("[model]\narch = \"wrn-7-1\"\n", ["depth"]),
    ("[hw]\nclock_mhz = -5\n", ["c.toml", "hw.clock_mhz", "positive"]),
    ("[hw]\nsynth = false\n", ["pnr", "synth"]),
])
def test_bad_config_file_is_one_error_line(tmp_path, capsys, text, named):
    (tmp_path / "c.toml").write_text(text)
    code, _, err = call(capsys, "run", "--config", tmp_path / "c.toml", "--out", tmp_path / "out")
    assert_one_error_line(code, err, *named)
    assert not (tmp_path / "out" / "train").exists()


def test_config_file_value_is_named_by_its_key_not_a_flag(tmp_path, capsys):
    """The user wrote clock_mhz in run.toml and typed no --clock-mhz: the message must not name that flag."""
    (tmp_path / "run.toml").write_text("[hw]\nclock_mhz = -5\n")
    code, _, err = call(capsys, "run", "--config", tmp_path / "run.toml", "--out", tmp_path / "out")
    assert_one_error_line(code, err, "run.toml", "hw.clock_mhz", "expected a positive number, got -5")
    assert "--clock-mhz" not in err
    code, _, err = call(capsys, "run", "--config", tmp_path / "run.toml", "--clock-mhz", "-7", "--out", tmp_path / "out")
    assert_one_error_line(code, err, "--clock-mhz: expected a positive number, got -7")  # the flag wins, and is named
    assert "hw.clock_mhz" not in err


def test_train_device_in_config_is_not_the_fpga_flag(tmp_path, capsys):
    """[train] device and `onebit run --device` (the FPGA) are different settings of the same library name."""
    (tmp_path / "c.toml").write_text('[train]\ndevice = "tpu"\n')
    code, _, err = call(capsys, "run", "--config", tmp_path / "c.toml", "--out", tmp_path / "out")
    assert_one_error_line(code, err, "train.device", "tpu")
    assert "--device" not in err


def test_stage_errors_name_the_config_key(tmp_path):
    """A library error raised inside a stage names the configuration key its parameter was given from."""
    from onebit.errors import FoldingError

    def fold(ctx):
        raise FoldingError("target_fps: expected a positive number, got 0", param="target_fps")

    with pytest.raises(FoldingError, match="^fold.target_fps: expected") as info:
        run_stages([Stage("fold", fold, params={"target_fps": "fold.target_fps"})], Context(config.merge(), tmp_path))
    assert info.value.param == "fold.target_fps"


@pytest.mark.parametrize("args, named", [
    (["--config", "missing.toml"], ["--config", "missing.toml", "no such file"]),
    (["--config", "c.json"], ["--config", "c.json", ".toml"]),
    (["--until", "synth"], ["--until", "'synth'"]),
    (["--target-fps", "0"], ["--target-fps", "positive"]),
    (["--arch", "resnet"], ["--arch", "resnet"]),
    (["--device", "xc7z020"], ["--device", "xc7z020", "ecp5-25k"]),
    (["--model", "nope.onnx"], ["--model", "nope.onnx", "no such file"]),
    (["--input-scale", "1/255"], ["--input-scale", "model.onnx"]),
    (["--model", "c.json", "--input-type", "UINT99"], ["--input-type", "'UINT99'"]),
    (["--model", "c.json", "--input-type", "UINT8", "--until", "train"], ["--until", "'train'", "lower"]),
])
def test_bad_flags_are_one_error_line(tmp_path, capsys, monkeypatch, args, named):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.json").write_text("{}")
    code, _, err = call(capsys, "run", "--out", "out", *args)
    assert_one_error_line(code, err, *named)


def test_bad_yaml_is_one_error_line(tmp_path, capsys):
    (tmp_path / "c.yml").write_text("train: [epochs: 2\n")
    code, _, err = call(capsys, "run", "--config", tmp_path / "c.yml", "--out", tmp_path / "out")
    assert_one_error_line(code, err, "c.yml", "YAML")


# ----- stages and stamps -----------------------------------------------------------------------------------
def toy_stages(calls: list[str], fail: set[str] = frozenset()) -> list[Stage]:
    def make(name, src, dst):
        def fn(ctx):
            calls.append(name)
            if name in fail:
                raise KeyboardInterrupt
            text = ctx.path(src).read_text() if src else str(ctx.cfg["fold"]["target_fps"])
            ctx.path(dst).write_text(text + name)
            return {"resumed": ctx.resuming}
        return fn

    return [Stage("a", make("a", None, "a.txt"), config=("fold",), writes=("a.txt",)),
            Stage("b", make("b", "a.txt", "b.txt"), config=("hw.clock_mhz",), reads=("a.txt",), writes=("b.txt",))]


def test_a_changed_generator_reruns_its_stage(tmp_path, monkeypatch):
    """A stage whose key names onebit's own code runs again when that code changes (a new RTL generator, the
    same version); the others stay skipped."""
    from dataclasses import replace

    from onebit.flow import engine

    calls, cfg = [], config.merge()
    stages = lambda: [replace(s, code=("hw",)) if s.name == "b" else s for s in toy_stages(calls)]  # noqa: E731
    run_stages(stages(), Context(cfg, tmp_path))
    run_stages(stages(), Context(cfg, tmp_path))
    assert calls == ["a", "b"]
    real = engine.code_hash
    monkeypatch.setattr(engine, "code_hash", lambda sub: "edited" if sub == "hw" else real(sub))
    run_stages(stages(), Context(cfg, tmp_path))
    assert calls == ["a", "b", "b"]
    assert engine.code_hash("hw") != engine.code_hash("sim") and len(real("hw")) == 64


def test_stamps_skip_rerun_and_resume(tmp_path):
    calls, log = [], []
    cfg = config.merge()
    ctx = lambda c=cfg: Context(c, tmp_path, log.append)  # noqa: E731
    rows = run_stages(toy_stages(calls), ctx())
    assert [r["status"] for r in rows] == ["ran", "ran"] and calls == ["a", "b"]

    rows = run_stages(toy_stages(calls), ctx())
    assert [r["status"] for r in rows] == ["skipped", "skipped"] and calls == ["a", "b"]
    assert "skipped (inputs unchanged)" in log[-1]

    other = config.merge(config.check({"hw": {"clock_mhz": 80}}, "t"))
    run_stages(toy_stages(calls), ctx(other))
    assert calls == ["a", "b", "b"]  # only b depends on the clock

    (tmp_path / "b.txt").write_text("edited")  # an output that is no longer what the stage wrote
    run_stages(toy_stages(calls), ctx(other))
    assert calls[-1] == "b"

    (tmp_path / "a.txt").write_text("new input")  # a changed input re-runs its reader only
    calls.clear()
    run_stages(toy_stages(calls)[1:], ctx(other))
    assert calls == ["b"]

    with pytest.raises(KeyboardInterrupt):  # interrupted: the stamp says running, the next run resumes
        run_stages(toy_stages(calls, fail={"a"}), ctx(config.merge(config.check({"fold": {"target_fps": 5}}, "t"))))
    assert read_stamp(stamp_path(ctx(), "a"))["status"] == "running"
    c = ctx(config.merge(config.check({"fold": {"target_fps": 5}}, "t")))
    run_stages(toy_stages(calls), c)
    assert c.results["a"] == {"resumed": True}


def test_until_stops_after_the_stage(tmp_path):
    calls = []
    rows = run_stages(toy_stages(calls), Context(config.merge(), tmp_path), until="a")
    assert [r["stage"] for r in rows] == ["a"] and calls == ["a"]


def test_one_run_per_folder(tmp_path):
    with locked(tmp_path):
        with pytest.raises(ConfigError, match="another onebit run"):
            with locked(tmp_path):
                pass


# ----- verdicts --------------------------------------------------------------------------------------------
def test_hw_verdicts():
    good = {"cosim": {"frames": 2, "outputs_equal": True, "cycles_equal": True, "mismatches": []},
            "synth": {"fmax_mhz": 60.0, "bitstream": "onebit.bit"}}
    assert [r["verdict"] for r in hw_rows(good, HW_CFG)] == [PASS] * 4
    slow = {**good, "synth": {"fmax_mhz": 40.0, "bitstream": "onebit.bit"}}
    assert [r["verdict"] for r in hw_rows(slow, HW_CFG)] == [PASS, PASS, WARN, PASS]
    bad = {"cosim": {"frames": 2, "outputs_equal": False, "cycles_equal": True,
                     "mismatches": ["MVAU_0: frame 0 element [0, 1] 3 vs 4"]}, "synth": None}
    rows = hw_rows(bad, HW_CFG)
    assert rows[0]["verdict"] == FAIL and "MVAU_0" in rows[0]["detail"]
    assert [r["verdict"] for r in hw_rows(None, HW_CFG)] == [SKIP]
    # the output check on the frames past the edge-by-edge ones: its own row, naming how many it covered
    part = {"frames": 300, "of": 10000, "estimate_s": 410.0, "outputs_equal": True, "cycles_equal": True,
            "verilator_seconds": 11.8, "mismatches": []}
    rows = hw_rows({**good, "cosim_outputs": part}, HW_CFG)
    assert [r["verdict"] for r in rows] == [PASS] * 5
    assert rows[2]["frames"] == 300 and "300 of 10,000 frames (all would take about 410 s" in rows[2]["detail"]
    wrong = {**part, "frames": 10000, "outputs_equal": False, "mismatches": ["output of frame 7: RTL [3], reference [4]"]}
    rows = hw_rows({**good, "cosim_outputs": wrong}, HW_CFG)
    assert rows[2]["verdict"] == FAIL and rows[2]["detail"].startswith("output of frame 7")


PARITY = {"frames": 8, "pytorch_vs_qonnx": {"max_abs_diff": 2e-7, "argmax_agreement": 1.0, "tolerance": 1e-4},
          "qonnx_vs_integer": {"max_abs_diff": 1e-7, "argmax_agreement": 1.0, "tolerance": 1e-4},
          "pytorch_integer_view_vs_integer": {"identical": True, "differing_scores": 0},
          "integer_vs_dataflow": {"scores_identical": True, "labels_identical": True}}


def test_export_verdicts_are_computed_from_the_parity_numbers():
    assert [r["verdict"] for r in export_rows(PARITY)] == [PASS] * 4
    over = {**PARITY, "qonnx_vs_integer": {**PARITY["qonnx_vs_integer"], "max_abs_diff": 3e-4}}
    assert [r["verdict"] for r in export_rows(over)] == [PASS, FAIL, PASS, PASS]
    tie = {**PARITY, "pytorch_vs_qonnx": {**PARITY["pytorch_vs_qonnx"], "argmax_agreement": 0.875}}
    assert export_rows(tie)[0]["verdict"] == WARN and "87.5 %" in export_rows(tie)[0]["detail"]
    far = {**PARITY, "pytorch_vs_qonnx": {**PARITY["pytorch_vs_qonnx"], "max_abs_diff": 0.5}}
    assert export_rows(far)[0]["verdict"] == FAIL
    foreign = {k: v for k, v in PARITY.items() if not k.startswith("pytorch")}  # `onebit lower`: no PyTorch
    assert [r["check"] for r in export_rows(foreign)] == ["QONNX = integer graph",
                                                          "integer graph = dataflow graph (scores, labels)"]


def test_one_verdict_and_one_vocabulary():
    result = verdict(export_rows({**PARITY, "integer_vs_dataflow": {"scores_identical": True,
                                                                   "labels_identical": False}}))
    assert not result["passed"] and result["failed"] == ["integer graph = dataflow graph (scores, labels)"]
    assert summary_line(result) == "FAILED: integer graph = dataflow graph (scores, labels)"
    assert summary_line(verdict(export_rows(PARITY))) == "every check passes"
    lines = format_checks(result["checks"])
    assert lines[0].split() == ["verdict", "stage", "check", "detail"] and lines[-1].startswith("FAIL ")
    assert {line.split()[0] for line in lines[1:]} <= {PASS, FAIL, WARN, "not"}


# ----- end to end ------------------------------------------------------------------------------------------
# Synthesis without place and route: nextpnr on this design takes minutes of CI's time, and
# test_hw_synth.py::test_place_route_and_bitstream_ecp5 places, routes and packs a bitstream already.
SMALL = """\
[train]
epochs = 3
[verify]
frames = 24
[hw]
frames = 2
pnr = false
"""


def onebit(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "onebit", *map(str, args)], cwd=cwd, capture_output=True, text=True)


def kill_during_training(folder: Path, cwd: Path) -> None:
    """Start a run and SIGKILL it as soon as training has written its first checkpoint."""
    proc = subprocess.Popen([sys.executable, "-m", "onebit", "run", "--config", "small.toml", "--out", folder, "-q"],
                            cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = folder / "train" / "checkpoint.pt"
    deadline = time.monotonic() + 600
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert checkpoint.exists(), "the run ended before its first checkpoint"


@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    """The whole flow with a small budget, killed during training and run again (from its saved run.toml)."""
    root = tmp_path_factory.mktemp("flow")
    (root / "small.toml").write_text(SMALL)
    folder = root / "run"
    kill_during_training(folder, root)
    stamp = read_stamp(folder / ".stamps" / "train.json")
    proc = onebit("run", "--out", folder, "-q", cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return folder, stamp, proc


@pytest.mark.slow
def test_run_resumes_the_killed_training(flow):
    folder, stamp, proc = flow
    assert stamp["status"] == "running"
    assert "[1/8] train: resuming" in proc.stderr
    metrics = [json.loads(line) for line in (folder / "train" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2, 3]


@pytest.mark.slow
def test_run_runs_every_stage(flow):
    folder, _, proc = flow
    for i, name in enumerate(STAGE_NAMES, 1):
        assert f"[{i}/8] {name}: done" in proc.stderr, proc.stderr[-3000:]
    saved = config.load_file(folder / "run.toml")
    assert saved["train"]["epochs"] == 3 and saved["verify"]["frames"] == 24
    assert saved["hw"]["frames"] == 2 and not saved["hw"]["pnr"]
    verdict = json.loads((folder / "verify.json").read_text())
    assert verdict["passed"], verdict
    stages = {c["stage"] for c in verdict["checks"] if c["verdict"] == PASS}
    assert stages == {"pack", "export", "sim", "hw"}
    assert [c["check"] for c in verdict["checks"] if c["verdict"] == SKIP] == ["place and route, bitstream"]
    build = json.loads((folder / "hw" / "build.json").read_text())
    assert build["cosim"]["frames"] == 2 and build["cosim"]["outputs_equal"] and build["cosim"]["cycles_equal"]
    # the outputs of every checked test image (24 run in well under [hw] cosim_seconds), exact to the cycle
    outputs = build["cosim_outputs"]
    assert outputs["frames"] == outputs["of"] == 24 and outputs["outputs_equal"] and outputs["cycles_equal"]
    row = next(c for c in verdict["checks"] if c["check"].startswith("RTL outputs"))
    assert row["frames"] == 24 and "all 24 frames" in row["detail"]
    resources = build["synth"]["resources"]
    assert resources["luts"] > 1000 and resources["dsp"] == 0 and build["synth"]["bitstream"] is None
    assert "report: " in proc.stdout and "verification: every check passes" in proc.stdout


class Page(HTMLParser):
    """The images, the h2 headings and the text of every table cell of a page."""

    def __init__(self):
        super().__init__()
        self.images, self.headings, self.cells, self._in = [], [], [], None

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        elif tag in ("h2", "td"):
            self._in = tag
            (self.headings if tag == "h2" else self.cells).append("")

    def handle_data(self, data):
        if self._in:
            (self.headings if self._in == "h2" else self.cells)[-1] += data

    def handle_endtag(self, tag):
        if tag == self._in:
            self._in = None


@pytest.mark.slow
def test_report_is_self_contained_html(flow):
    from PIL import Image

    folder, _, _ = flow
    page = Page()
    page.feed((folder / "report.html").read_text(encoding="utf-8"))
    page.close()
    for heading in ("Summary", "Verification", "Training", "Packed size", "Dataflow graph", "Folding"):
        assert heading in page.headings
    assert any(h.startswith("Simulation") for h in page.headings) and any(h.startswith("Hardware")
                                                                        for h in page.headings)
    assert len(page.images) == 3  # training curves, cycles per layer, pipeline timeline
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        try:
            data = base64.b64decode(src.split(",", 1)[1], validate=True)
        except binascii.Error as e:
            pytest.fail(f"image data is not base64: {e}")
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
    assert "FAIL" not in page.cells and "pass" in page.cells


@pytest.mark.slow
def test_second_run_skips_every_stage(flow):
    folder, _, _ = flow
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file() and p.name != ".lock"}
    proc = onebit("run", "--out", folder, cwd=folder.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for i, name in enumerate(STAGE_NAMES, 1):
        assert f"[{i}/8] {name}: skipped (inputs unchanged)" in proc.stderr
    after = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file() and p.name != ".lock"}
    changed = [str(p.relative_to(folder)) for p in after if before.get(p) != after[p]]
    assert changed == [], changed


@pytest.mark.slow
def test_changed_target_reruns_from_fold(flow, tmp_path):
    folder, _, _ = flow
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("hw"))
    proc = onebit("run", "--out", copy, "--target-fps", "400", "--until", "sim", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    status = {r["stage"]: r["status"] for r in json.loads(proc.stdout)["stages"]}
    assert status == {"train": "skipped", "pack": "skipped", "export": "skipped", "fold": "ran", "sim": "ran"}
    assert config.load_file(copy / "run.toml")["fold"]["target_fps"] == 400.0


# ----- a network of the user's own ------------------------------------------------------------------------
def test_run_on_a_users_qonnx_file(tmp_path, capsys):
    """FINN's TFC-W1A1 (random weights) from its QONNX file: lowered, folded, simulated and co-simulated in
    Verilator, every check passing; the HTML report written; a second run skips every stage."""
    bnn_pynq = pytest.importorskip("brevitas_examples.bnn_pynq.models")
    import contextlib

    import torch
    from brevitas.export import export_qonnx

    torch.manual_seed(0)
    model, _ = bnn_pynq.model_with_cfg("tfc_1w1a", pretrained=False)
    with contextlib.redirect_stdout(io.StringIO()):
        export_qonnx(model.eval(), torch.rand(1, 1, 28, 28), str(tmp_path / "tfc.onnx"))
    (tmp_path / "c.toml").write_text(f"[model]\nonnx = {json.dumps(str(tmp_path / 'tfc.onnx'))}\n"
                                     '[verify]\nframes = 40\n[hw]\nsynth = false\npnr = false\nframes = 2\n')
    args = ("run", "--config", tmp_path / "c.toml", "--input-type", "UINT8", "--input-scale", "1/255",
            "--out", tmp_path / "r", "--json", "-q")
    code, out, err = call(capsys, *args)
    assert code == 0, err
    result = json.loads(out)
    assert [r["stage"] for r in result["stages"]] == ["lower", "fold", "sim", "hw", "verify", "report"]
    lower = result["results"]["lower"]
    assert lower["integer_vs_dataflow"] == {"scores_identical": True, "labels_identical": True}
    # the digits' 8x8 images are not its input: random UINT8 codes, as many as [verify] frames asks
    assert lower["frames"] == 40 and lower["inputs"].startswith("random codes")
    hw = result["results"]["hw"]
    assert hw["outputs_equal"] and hw["cycles_equal"] and hw["frames"] == 2
    assert hw["output_frames"] == hw["output_frames_of"] == 40 and hw["outputs_exact"]
    assert result["results"]["verify"]["passed"]
    assert (tmp_path / "r" / "report.html").is_file()
    code, out, err = call(capsys, *args)
    assert code == 0, err
    assert {r["status"] for r in json.loads(out)["stages"]} == {"skipped"}


# ----- a run trained elsewhere -----------------------------------------------------------------------------
def test_run_goes_on_from_a_trained_run(trained_run, tmp_path, capsys):
    """`onebit run --checkpoint RUN`: the run's checkpoint becomes train/ (nothing is trained), and the flow goes
    on from it; the run's files are part of the stage's key."""
    run, summary = trained_run
    code, out, err = call(capsys, "run", "--checkpoint", run, "--out", tmp_path / "r", "--until", "export", "--json",
                          "-q")
    assert code == 0, err
    result = json.loads(out)
    train = result["results"]["train"]
    assert train["epochs"] == summary["epochs"] and train["test_acc"] == summary["test_acc"]
    assert train["train_time_s"] == pytest.approx(summary["train_time_s"])
    assert (tmp_path / "r" / "train" / "checkpoint.pt").read_bytes() == (run / "checkpoint.pt").read_bytes()
    assert result["results"]["export"]["integer_vs_dataflow"]["labels_identical"]
    # run.toml names the network the run is, whatever a configuration file said
    (tmp_path / "other.toml").write_text('[model]\narch = "wrn-8-2"\nabits = 2\n')
    code, out, err = call(capsys, "run", "--config", tmp_path / "other.toml", "--checkpoint", run, "--out",
                          tmp_path / "r", "--until", "export", "--json", "-q")
    assert code == 0, err
    saved = (tmp_path / "r" / "run.toml").read_text()
    assert 'arch = "tiny"' in saved and "abits = 4" in saved
    assert {r["status"] for r in json.loads(out)["stages"]} == {"skipped"}
    code, out, err = call(capsys, "run", "--checkpoint", run, "--out", tmp_path / "r", "--until", "pack", "--json",
                          "-q")
    assert code == 0 and {r["stage"]: r["status"] for r in json.loads(out)["stages"]} == {"train": "skipped",
                                                                                         "pack": "skipped"}


def test_a_run_stopped_early_is_used_as_it_is(trained_run, tmp_path, capsys):
    import shutil

    run, summary = trained_run
    early = tmp_path / "early"
    shutil.copytree(run, early)
    cfg = json.loads((early / "config.json").read_text())
    cfg["train"]["epochs"] = summary["epochs"] + 10  # as if it had stopped 10 epochs short
    (early / "config.json").write_text(json.dumps(cfg))
    code, out, err = call(capsys, "run", "--checkpoint", early, "--out", tmp_path / "r", "--until", "train")
    assert code == 0, err
    assert f"{summary['epochs']} of {summary['epochs'] + 10} epochs, used as it is" in err
    assert f"after {summary['epochs']} epochs" in out
    assert (tmp_path / "r" / "train" / "checkpoint.pt").read_bytes() == (run / "checkpoint.pt").read_bytes()


def test_a_trained_run_is_checked_before_anything_runs(trained_run, tmp_path, capsys):
    run, _ = trained_run
    code, _, err = call(capsys, "run", "--checkpoint", run, "--data", "fashion-mnist", "--out", tmp_path / "r")
    assert_one_error_line(code, err, "--checkpoint", "trained on 'digits'", "'fashion-mnist'")
    code, _, err = call(capsys, "run", "--checkpoint", tmp_path / "nope", "--out", tmp_path / "r")
    assert_one_error_line(code, err, "--checkpoint", "nope", "no such run folder")
    code, _, err = call(capsys, "run", "--checkpoint", run, "--abits", "2", "--out", tmp_path / "r")
    assert_one_error_line(code, err, "--abits", "has abits 4, not 2")
    (tmp_path / "c.json").write_text("{}")
    code, _, err = call(capsys, "run", "--checkpoint", run, "--model", tmp_path / "c.json", "--out", tmp_path / "r")
    assert_one_error_line(code, err, "--checkpoint", "give one of them")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "checkpoint.pt").write_bytes(b"not a checkpoint")
    (broken / "config.json").write_text((run / "config.json").read_text())
    code, _, err = call(capsys, "run", "--checkpoint", broken, "--out", tmp_path / "r")
    assert_one_error_line(code, err, "--checkpoint", "broken/checkpoint.pt")
    assert not (tmp_path / "r" / "train").exists()
