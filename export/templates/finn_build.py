#!/usr/bin/env python3
"""FINN+ build of onebit's dataflow graph (written by onebit.export.finn_handoff.write_finn_build).

    python build.py                  # the full build through FINN+'s CLI `finn build` (needs Vivado, Vitis HLS)
    python build.py --estimate-only  # FINN+'s cycle and resource estimates only (no Vivado needed)
    python build.py --check          # check the configuration against the installed FINN+ (no Vivado needed)

Other arguments go to `finn build` (e.g. --batch, --skip-dep-update, --stop STEP). model.onnx is already a
graph of FINN+ HW layers, so the steps start at step_create_dataflow_partition; folding_config.json holds
onebit's folding (PE, SIMD) and dataflow_build_config.json the build options.
"""

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
    """The DataflowBuildConfig, checked: known keys, existing folding config, every step name resolves."""
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
