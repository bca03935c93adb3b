"""Training-step throughput of WRN-20-10: onebit's Brevitas 1-bit QAT model against plain-PyTorch float.

One training step = forward + cross-entropy + backward + SGD step (momentum 0.9, weight decay 5e-4), on a fixed
random batch of shape (N, 3, 32, 32) (``--image-size`` changes 32) in [0, 1] (the model's ``pixel / 255`` input),
10 classes. Models:

* ``qat-1bit``     -- ``build_model(parse_arch('wrn-20-10'))``: 1-bit weights (Brevitas), float activations;
* ``qat-1bit-a4``  -- the same with 4-bit activations (``abits=4``, Brevitas activation quantizers);
* ``float``        -- a plain-PyTorch WRN-20-10 of exactly the same shape written here (``nn.Conv2d``, BN without
                      affine or shifted ReLU, no Brevitas): the reference the ratio is taken against;
* ``onebit-fp``    -- (optional) onebit's own full-precision model (``fp``): a check that it matches ``float``.

Reports images/s per model, the QAT/float step-time ratio, conv FLOPs per image (analytic: 2 * MACs forward,
x3 for forward + backward), achieved FLOP/s and, on CUDA, MFU against ``--peak-tflops``.

    python benchmarks/train_speed.py --device cpu
    python benchmarks/train_speed.py --device cuda --bf16 --channels-last
    python benchmarks/train_speed.py --device cpu --profile      # where the Brevitas overhead goes
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, command_line, format_table, machine_info, write_json  # noqa: E402

from onebit.training.config import ACTIVATIONS, ArchConfig, parse_arch  # noqa: E402
from onebit.training.model import build_model  # noqa: E402

ALL_MODELS = ("qat-1bit", "qat-1bit-a4", "float", "onebit-fp")
DEFAULT_MODELS = ("qat-1bit", "qat-1bit-a4", "float")
NUM_CLASSES = 10


# ----------------------------------------------------------------------------------------------- plain float WRN
class PlainBlock(nn.Module):
    def __init__(self, act: str, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.act1 = plain_act(act, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.act2 = plain_act(act, out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.pool = nn.AvgPool2d(2) if stride == 2 else None
        self.extra = out_ch - in_ch

    def forward(self, x):
        y = self.conv2(self.act2(self.conv1(self.act1(x))))
        shortcut = self.pool(x) if self.pool is not None else x
        if self.extra:
            shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.extra))
        return y + shortcut


class SReLU(nn.Module):
    def forward(self, x):
        return torch.clamp_min(x, -1.0)


def plain_act(act: str, channels: int) -> nn.Module:
    if act == "bn-relu":
        return nn.Sequential(nn.BatchNorm2d(channels, affine=False), nn.ReLU())
    return SReLU()


class PlainWRN(nn.Module):
    """WRN-d-k in plain PyTorch, the same structure as :class:`onebit.training.model.WRN` with float weights."""

    def __init__(self, cfg: ArchConfig):
        super().__init__()
        w1, w2, w3 = cfg.widths
        self.input_bn = nn.BatchNorm2d(cfg.in_channels, affine=True)
        self.conv0 = nn.Conv2d(cfg.in_channels, w1, 3, padding=1, bias=False)
        blocks, in_ch = [], w1
        for stage, out_ch in enumerate((w1, w2, w3)):
            for i in range(cfg.blocks_per_stage):
                blocks.append(PlainBlock(cfg.act, in_ch, out_ch, 2 if stage > 0 and i == 0 else 1))
                in_ch = out_ch
        self.blocks = nn.Sequential(*blocks)
        self.head_act = plain_act(cfg.act, w3)
        self.head_conv = nn.Conv2d(w3, cfg.num_classes, 1, bias=False)
        self.inv_temperature = 1.0 / cfg.logit_temperature
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")

    def forward(self, x):
        x = self.head_conv(self.head_act(self.blocks(self.conv0(self.input_bn(x)))))
        return x.mean(dim=(2, 3)) * self.inv_temperature


def make_model(name: str, arch: str, act: str | None, image_size: int = 32) -> tuple[nn.Module, str]:
    common = dict(act=act, in_channels=3, num_classes=NUM_CLASSES, image_size=image_size)
    if name == "qat-1bit":
        cfg = parse_arch(arch, abits=0, **common)
        return build_model(cfg), cfg.describe() + " (onebit, Brevitas)"
    if name == "qat-1bit-a4":
        cfg = parse_arch(arch, abits=4, **common)
        return build_model(cfg), cfg.describe() + " (onebit, Brevitas)"
    if name == "onebit-fp":
        cfg = parse_arch(arch, binary=False, abits=0, **common)
        return build_model(cfg), cfg.describe() + " (onebit, no Brevitas)"
    if name == "float":
        cfg = parse_arch(arch, binary=False, abits=0, **common)
        return PlainWRN(cfg), cfg.describe() + " (plain PyTorch)"
    raise ValueError(name)


# ----------------------------------------------------------------------------------------------- FLOPs
def conv_macs_per_image(model: nn.Module, image_size: int = 32) -> int:
    """Multiply-accumulates of every conv for one image, from each conv's weight and output shapes."""
    total = 0

    def hook(m: nn.Conv2d, _inp, out):
        nonlocal total
        out_t = out.value if hasattr(out, "value") else out
        _, _, h, w = out_t.shape
        k = m.weight.shape[2] * m.weight.shape[3]
        total += m.out_channels * h * w * (m.in_channels // m.groups) * k

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(torch.rand(1, 3, image_size, image_size))
        model.train(was_training)
    finally:
        for h in handles:
            h.remove()
    return total


# ----------------------------------------------------------------------------------------------- timing
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, bf16: bool):
    dev_type = x.device.type

    def step():
        with torch.autocast(dev_type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
            loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    return step


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"[:500]


class Bench:
    """One model's training step, set up on the device, warmed up, timed and (optionally) profiled."""

    def __init__(self, name: str, args, device: torch.device, x: torch.Tensor, y: torch.Tensor):
        self.name, self.args, self.device, self.x, self.y = name, args, device, x, y
        torch.manual_seed(args.seed)
        model, description = make_model(name, args.arch, args.act, args.image_size)
        macs = conv_macs_per_image(model, args.image_size)
        params = sum(p.numel() for p in model.parameters())
        model = model.to(device).train()
        if args.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        self.result = {"model": name, "description": description, "params": params, "conv_macs_per_image": macs,
                       "compile": bool(args.compile)}
        self.run_model: nn.Module = model
        if args.compile:
            try:
                self.run_model = torch.compile(model)
            except Exception as e:  # noqa: BLE001 -- recorded, then eager
                self.result["compile_error"] = first_line(e)
        self.step = make_step(self.run_model, self.opt, x, y, args.bf16)
        self.times: list[float] = []
        self.loss = None

    def warmup(self) -> None:
        t0 = time.perf_counter()
        try:
            for _ in range(self.args.warmup):
                self.step()
            sync(self.device)
        except Exception as e:  # noqa: BLE001
            if self.run_model is self.model:
                raise
            # torch.compile compiles lazily: its failures surface in the first step. Record and go eager.
            self.result["compile_error"] = first_line(e)
            self.result["compile_traceback"] = traceback.format_exc(limit=3)[-2000:]
            self.run_model = self.model
            self.step = make_step(self.model, self.opt, self.x, self.y, self.args.bf16)
            for _ in range(self.args.warmup):
                self.step()
            sync(self.device)
        self.result["compiled"] = self.run_model is not self.model
        self.result["warmup_s"] = time.perf_counter() - t0

    def timed_step(self) -> None:
        t = time.perf_counter()
        self.loss = self.step()
        sync(self.device)
        self.times.append(time.perf_counter() - t)

    def finish(self) -> dict:
        r, args, times = self.result, self.args, self.times
        r["final_loss"] = float(self.loss.detach().float())
        r["step_times_s"] = times
        r["step_time_s"] = sum(times) / len(times)
        r["step_time_median_s"] = statistics.median(times)
        r["step_time_min_s"] = min(times)
        # the median step: robust to the odd step slowed by other processes (the mean is kept too)
        r["images_per_s"] = args.batch_size / r["step_time_median_s"]
        r["images_per_s_mean"] = args.batch_size * len(times) / sum(times)
        flops_img = 3 * 2 * r["conv_macs_per_image"]
        r["train_flops_per_image"] = flops_img
        r["achieved_tflops"] = flops_img * r["images_per_s"] / 1e12
        if args.peak_tflops:
            r["mfu"] = r["achieved_tflops"] / args.peak_tflops
        if self.device.type == "cuda":
            r["max_memory_gib"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        if args.profile and self.name in args.profile_models:
            r["profile"] = profile(self.name, self.run_model, self.step, self.device, args)
        return r

    def close(self) -> None:
        del self.model, self.run_model, self.opt, self.step
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def run_all(args, device: torch.device, x: torch.Tensor, y: torch.Tensor) -> list[dict]:
    """Time every model; interleaved (one step of each in turn) so that load changes hit all alike."""
    results = []
    if args.sequential:
        for name in args.models:
            print(f"[train_speed] {name}: {args.warmup} warmup + {args.steps} timed steps ...", flush=True)
            b = Bench(name, args, device, x, y)
            b.warmup()
            for _ in range(args.steps):
                b.timed_step()
            results.append(b.finish())
            b.close()
            print(f"[train_speed] {name}: {results[-1]['images_per_s']:.2f} images/s", flush=True)
        return results
    benches = []
    for name in args.models:
        print(f"[train_speed] {name}: setting up and {args.warmup} warmup step(s) ...", flush=True)
        b = Bench(name, args, device, x, y)
        b.warmup()
        if "compile_error" in b.result:
            print(f"[train_speed] {name}: torch.compile failed, eager instead: {b.result['compile_error']}")
        benches.append(b)
    for i in range(args.steps):
        for b in benches:
            b.timed_step()
        print(f"[train_speed] timed round {i + 1}/{args.steps}: "
              + ", ".join(f"{b.name} {b.times[-1] * 1e3:.0f} ms" for b in benches), flush=True)
    for b in benches:
        results.append(b.finish())
        b.close()
    return results


# ----------------------------------------------------------------------------------------------- profiling
def _module_labels(model: nn.Module):
    """Forward hooks that open a ``module::<Class>`` profiler range around every module's forward."""
    handles, stack = [], []

    def pre(m, _inp):
        rf = torch.autograd.profiler.record_function(f"module::{type(m).__name__}")
        rf.__enter__()
        stack.append(rf)

    def post(m, _inp, _out):
        stack.pop().__exit__(None, None, None)

    for m in model.modules():
        handles.append(m.register_forward_pre_hook(pre))
        handles.append(m.register_forward_hook(post))
    return handles


def profile(name: str, run_model: nn.Module, step, device: torch.device, args) -> dict:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    base = getattr(run_model, "_orig_mod", run_model)
    with torch_profile(activities=activities, record_shapes=False) as prof:
        for _ in range(args.profile_steps):
            step()
        sync(device)
    # a second pass with per-module ranges (hooks add a little overhead of their own)
    handles = _module_labels(base)
    try:
        with torch_profile(activities=activities, record_shapes=False) as prof_mod:
            for _ in range(args.profile_steps):
                step()
            sync(device)
    finally:
        for h in handles:
            h.remove()

    cuda = device.type == "cuda"
    sort_key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    events = prof.key_averages()
    try:
        table = events.table(sort_by=sort_key, row_limit=args.profile_rows)
    except Exception:  # noqa: BLE001 -- newer torch names the device column 'device'
        sort_key = "self_device_time_total" if cuda else sort_key
        table = events.table(sort_by=sort_key, row_limit=args.profile_rows)

    def self_time(e) -> float:
        if cuda:
            return getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0.0))
        return e.self_cpu_time_total

    steps = args.profile_steps
    total_self = sum(self_time(e) for e in events) or 1.0
    top = sorted(events, key=self_time, reverse=True)[:args.profile_rows]
    top_ops = [{"op": e.key, "calls_per_step": e.count / steps, "self_ms_per_step": self_time(e) / 1e3 / steps,
                "self_share": self_time(e) / total_self, "cpu_total_ms_per_step": e.cpu_time_total / 1e3 / steps}
               for e in top]
    modules = [e for e in prof_mod.key_averages() if e.key.startswith("module::")]
    modules.sort(key=lambda e: e.cpu_time_total, reverse=True)
    module_rows = [{"module": e.key[len("module::"):], "calls_per_step": e.count / steps,
                    "forward_cpu_total_ms_per_step": e.cpu_time_total / 1e3 / steps} for e in modules]

    path = Path(args.out).with_name(Path(args.out).stem + f"_profile_{name}.txt")
    lines = [f"# torch.profiler: {args.profile_steps} training steps of {name}, batch {args.batch_size}, "
             f"device {device}, sorted by {sort_key}", command_line(), "", table, "",
             "# forward time per module class (inclusive of children; CPU time of the Python/dispatch side, "
             "per step)", ""]
    lines.append(format_table(["module", "calls/step", "fwd ms/step"],
                              [[r["module"], f"{r['calls_per_step']:.0f}", f"{r['forward_cpu_total_ms_per_step']:.2f}"]
                               for r in module_rows]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return {"file": str(path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path),
            "steps": steps, "sorted_by": sort_key, "top_ops": top_ops, "forward_by_module": module_rows}


# ----------------------------------------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--arch", default="wrn-20-10", help="wrn-20-10 or any wrn-D-K")
    p.add_argument("--act", choices=ACTIVATIONS, default=None,
                   help="activation of every model (default: the preset's, srelu for wrn-20-10)")
    p.add_argument("--models", default=",".join(DEFAULT_MODELS),
                   help=f"comma-separated subset of {', '.join(ALL_MODELS)}")
    p.add_argument("--image-size", type=int, default=32, help="input is (N, 3, S, S)")
    p.add_argument("--batch-size", type=int, default=None, help="default 16 on cpu, 256 on cuda")
    p.add_argument("--steps", type=int, default=None, help="timed steps per model (default 5 cpu, 20 cuda)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 1 cpu, 5 cuda)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (as the trainer does on cuda)")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile each model; failures are recorded")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (cpu)")
    p.add_argument("--sequential", action="store_true",
                   help="time one model after the other instead of one step of each in turn (less memory)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="peak for MFU (default 989 on cuda: H100 bf16 dense; none on cpu)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", action="store_true", help="torch.profiler over a few steps; writes the top ops")
    p.add_argument("--profile-models", default="qat-1bit,qat-1bit-a4,float",
                   help="which models --profile covers")
    p.add_argument("--profile-steps", type=int, default=2)
    p.add_argument("--profile-rows", type=int, default=30)
    p.add_argument("--out", default=None, help="JSON file (default benchmarks/results/train_speed_<device>.json)")
    args = p.parse_args(argv)
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available on this machine")
    args.batch_size = args.batch_size or (256 if cuda else 16)
    args.steps = args.steps if args.steps is not None else (20 if cuda else 5)
    args.warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    if args.compile:
        args.warmup = max(args.warmup, 2)  # the first calls compile
    if args.peak_tflops is None and cuda:
        args.peak_tflops = 989.0
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in args.models if m not in ALL_MODELS]
    if bad or not args.models:
        p.error(f"--models: unknown {bad}; expected some of {', '.join(ALL_MODELS)}")
    args.profile_models = [m.strip() for m in args.profile_models.split(",") if m.strip()]
    if args.batch_size < 1 or args.steps < 1 or args.warmup < 0:
        p.error("--batch-size and --steps must be >= 1, --warmup >= 0")
    args.out = args.out or str(RESULTS_DIR / f"train_speed_{args.device}.json")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(args.seed)
    x = torch.rand(args.batch_size, 3, args.image_size, args.image_size, generator=gen)
    y = torch.randint(0, NUM_CLASSES, (args.batch_size,), generator=gen)
    x, y = x.to(device), y.to(device)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    t_start = time.perf_counter()
    load_before = os.getloadavg()
    results = run_all(args, device, x, y)
    load_after = os.getloadavg()

    ref = next((r for r in results if r["model"] == "float"), None)
    ratios = {}
    for r in results:
        if ref is not None:
            r["step_time_ratio_vs_float"] = r["step_time_median_s"] / ref["step_time_median_s"]
            r["step_time_ratio_vs_float_mean"] = r["step_time_s"] / ref["step_time_s"]
            r["step_time_ratio_vs_float_min"] = r["step_time_min_s"] / ref["step_time_min_s"]
            if r["model"].startswith("qat"):
                ratios[f"{r['model']}/float"] = r["step_time_ratio_vs_float"]

    arch = parse_arch(args.arch, act=args.act)
    payload = {
        "benchmark": "train_speed",
        "what": "images/s (batch / median step time) of one training step (forward + cross-entropy + backward + "
                "SGD momentum/wd step) on a fixed random batch; conv FLOPs analytic (2*MACs fwd, x3 fwd+bwd)",
        "command": command_line(),
        "machine": machine_info(args.device),
        "settings": {"arch": args.arch, "act": arch.act, "input_shape": [args.batch_size, 3, args.image_size, args.image_size],
                     "num_classes": NUM_CLASSES, "batch_size": args.batch_size, "steps": args.steps,
                     "warmup": args.warmup, "bf16": args.bf16, "channels_last": args.channels_last,
                     "compile": args.compile, "peak_tflops": args.peak_tflops, "seed": args.seed},
        "results": results,
        "step_time_ratio_qat_over_float": ratios,
        "wall_s": time.perf_counter() - t_start,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
    }
    write_json(Path(args.out), payload)

    headers = ["model", "images/s", "ms/step (median)", "ms/step (min)", "ratio vs float", "TFLOP/s"]
    headers += ["MFU"] if args.peak_tflops else []
    rows = []
    for r in results:
        row = [r["model"] + (" (compiled)" if r.get("compiled") else ""), f"{r['images_per_s']:.1f}",
               f"{r['step_time_median_s'] * 1e3:.1f}", f"{r['step_time_min_s'] * 1e3:.1f}",
               f"{r['step_time_ratio_vs_float']:.2f}x" if "step_time_ratio_vs_float" in r else "-",
               f"{r['achieved_tflops']:.3f}"]
        if args.peak_tflops:
            row.append(f"{100 * r['mfu']:.1f} %")
        rows.append(row)
    m = payload["machine"]
    cuda_dev = device.type == "cuda"
    print()
    print(f"{args.arch} ({arch.act}) training step, batch {args.batch_size}, device {m['device_name']}"
          f"{', bf16' if args.bf16 else ''}{', channels_last' if args.channels_last else ''}; "
          f"{results[0]['train_flops_per_image'] / 1e9:.2f} GFLOP/image (fwd+bwd conv)")
    print(format_table(headers, rows))
    print("images/s and ratios from the median step time; ratio = step time / float's step time")
    if not cuda_dev and max(load_before[0], load_after[0]) > 0.5 * (os.cpu_count() or 1):
        print(f"note: load average {load_before[0]:.1f} -> {load_after[0]:.1f} on {os.cpu_count()} CPUs: "
              f"other processes share this machine, timings are noisy")
    print(f"\nwrote {args.out}")
    for r in results:
        if "profile" in r:
            print(f"profile of {r['model']}: {r['profile']['file']}")
    return payload


if __name__ == "__main__":
    main()
