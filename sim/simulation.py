"""The simulation of a dataflow graph: bit-exact outputs and the cycle schedule over N frames.

:func:`simulate` builds the :class:`~onebit.sim.network.Network`, solves its schedule
(:mod:`onebit.sim.solver`), names a deadlock (:mod:`onebit.sim.fifo_sizing`), sizes the FIFOs, extends a
proven steady state exactly (:mod:`onebit.sim.steady_state`) and runs the reference executor for outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from onebit.errors import GraphError
from onebit.export.dataflow import graph as dfg
from onebit.export.dataflow.executor import execute_frames
from onebit.sim.fifo_sizing import check_deadlock, needed_depths
from onebit.sim.network import Network
from onebit.sim.schedule import Schedule
from onebit.sim.solver import solve
from onebit.sim.steady_state import reach, steady_shift

#: frames the FIFO sizing looks at, at least (within SIZING_EVENT_BUDGET events)
SIZING_FRAMES = 4
SIZING_EVENT_BUDGET = 8_000_000
#: event budget of one timing run (all layers, all frames); more frames are extrapolated from the last II
EVENT_BUDGET = 24_000_000


@dataclass
class SimResult:
    """Everything a report needs: the network, the final schedule, the unbounded one, per-frame times."""

    net: Network
    schedule: Schedule  # the schedule with the graph's FIFO depths (the unbounded one if it has none)
    unbounded: Schedule
    frames: int
    simulated_frames: int
    done: np.ndarray  # per frame: cycle in which its last output beat leaves (extrapolated past simulated)
    start: np.ndarray  # per frame: cycle in which its first input beat enters
    needed: dict[int, int] = field(default_factory=dict)  # edge index -> depth it needs (see needed_depths)
    depth_frames: int = 0  # frames the needed depths were computed over
    outputs: dict | None = None  # bit-exact outputs (reference executor) when inputs were given
    steady: tuple[int, int] | None = None  # (q, d): every frame is the frame q before it shifted by d cycles

    @property
    def ii_model(self) -> int:
        """Steady-state initiation interval with unbounded FIFOs: the slowest layer's period."""
        return max(lm.period for lm in self.net.layers)

    @property
    def ii(self) -> int:
        """Initiation interval: in a steady state the mean interval between frame completions over its period
        (rounded), else the last simulated interval (the model's with one frame)."""
        if self.steady is not None:
            q, d = self.steady
            return int(round(d / q))
        n = self.simulated_frames
        return int(self.done[n - 1] - self.done[n - 2]) if n > 1 else self.ii_model

    @property
    def bottleneck(self) -> str:
        return max(self.net.layers, key=lambda lm: lm.period).name

    @property
    def latency(self) -> int:
        """First-frame latency in cycles: from its first input beat entering to its last output beat leaving."""
        return int(self.done[0] - self.start[0]) + 1


def simulate(model: ModelWrapper, frames: int | None = None, inputs: np.ndarray | None = None,
             depths: dict | None = None, event_budget: int = EVENT_BUDGET, fifo_sizing: bool = True,
             extend: bool = True) -> SimResult:
    """Simulate ``frames`` frames: the bit-exact outputs of ``inputs`` (if given; ``frames`` defaults to
    their count) and the cycle schedule.

    ``depths`` overrides FIFO depths (see :meth:`Network.set_depths`). Raises
    :class:`~onebit.sim.deadlock.DeadlockError` when the depths deadlock the pipeline. Frames beyond what
    ``event_budget`` events allow are extrapolated with the last simulated initiation interval
    (``simulated_frames`` says how many were simulated). Once the schedule is provably periodic
    (:func:`steady_shift`, after a few frames) the rest is extended exactly instead of simulated
    (``extend=False`` simulates every frame up to the budget). ``fifo_sizing``: also compute the depth each
    edge needs (:func:`needed_depths`) over the simulated frames.
    """
    if frames is not None and frames < 1:
        raise GraphError(f"frames: expected at least 1, got {frames}", param="frames")
    net = Network(model)
    net.set_depths(depths)
    x = None
    if inputs is not None:
        x = np.asarray(inputs)
        if x.ndim == len(dfg.input_shape(model)) - 1:
            x = x[None]
        frames = frames or len(x)
        if frames > len(x):
            raise GraphError(f"frames: expected at most {len(x)} (the frames in inputs), got {frames}",
                             param="frames")
        x = dfg.check_frames(model, x[:frames], "inputs")
    frames = int(frames or 1)
    per_frame = max(1, net.events_per_frame())
    n_sim = max(1, min(frames, event_budget // per_frame))
    if frames > 1:
        n_sim = max(n_sim, 2)
    probe = 4 + reach(net) if extend else None
    steady = sched = None
    if probe is not None and n_sim > probe:
        # the schedule repeats once it has repeated for one period (see steady_shift): simulate a few frames
        # and extend exactly; more only while it has not settled
        for n_try in (probe, 2 * probe, 4 * probe):
            if n_try >= n_sim:
                break
            trial = solve(net, n_try, None if net.finite else False, check_deadlock=False)
            if not trial.converged:  # a deadlock (named below) or no fixed point within the iterations
                break
            steady = steady_shift(trial)
            if steady is not None:
                n_sim, sched = n_try, trial
                break
    # a converged trial has no deadlock: its first frame is the first frame
    first = check_deadlock(net) if net.finite and sched is None else None
    unbounded = sched if sched is not None and not net.finite else solve(net, n_sim, False)
    needed, depth_frames = {}, 0
    if fifo_sizing:  # over enough frames to see the steady state (two frames can miss what the third needs),
        # as far as the sizing's event budget goes (a WRN-20-10 frame alone has ~8M events)
        depth_frames = max(n_sim, min(SIZING_FRAMES, SIZING_EVENT_BUDGET // per_frame))
        needed = needed_depths(unbounded if depth_frames == n_sim else solve(net, depth_frames, False))
    if sched is None:  # else the converged trial is the schedule
        if not net.finite:
            sched = unbounded
        elif n_sim == 1:
            sched = first
        else:
            sched = solve(net, n_sim, True, check_deadlock=False)
    outputs = execute_frames(model, x) if x is not None else None
    done, start = sched.frame_done(), sched.frame_start()
    if frames > n_sim and steady is not None:  # exact: frame k is frame k - q shifted by d
        q, d = steady
        k = np.arange(n_sim, frames, dtype=np.int64)
        back = n_sim - q + (k - n_sim) % q
        done = np.concatenate([done, done[back] + ((k - n_sim) // q + 1) * d])
        start = np.concatenate([start, start[back] + ((k - n_sim) // q + 1) * d])
    elif frames > n_sim:  # past the event budget: an extrapolation with the last interval
        ii = int(done[-1] - done[-2]) if n_sim > 1 else max(lm.period for lm in net.layers)
        extra = np.arange(1, frames - n_sim + 1, dtype=np.int64)
        done = np.concatenate([done, done[-1] + extra * ii])
        step = int(start[-1] - start[-2]) if n_sim > 1 else ii
        start = np.concatenate([start, start[-1] + extra * step])
    return SimResult(net, sched, unbounded, frames, n_sim, done, start, needed, depth_frames, outputs, steady)
