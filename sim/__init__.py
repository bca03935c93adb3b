"""Simulator: bit-exact outputs and a cycle model of a folded dataflow graph's streams (design.md section 2).

sim/ reads the dataflow graph file and nothing else (it imports neither torch nor onebit.training):

- :mod:`onebit.sim.model`: per layer, the bit-exact execution (the op class's own ``execute``, which is the
  reference executor's) and its stream behaviour as an in-order step machine: cycles per frame (FINN's
  ``exp_cycles``), fill latency, input and output rates, stalls on empty inputs and full outputs;
- :mod:`onebit.sim.network`: the pipeline with its residual forks and joins: the layers and their stream
  edges, with FIFO depths from StreamingFIFO nodes or a ``depths`` mapping (the ``--fifo-depths`` file);
- :mod:`onebit.sim.schedule`, :mod:`onebit.sim.solver`, :mod:`onebit.sim.policy`: event times of every beat
  as vectorised max-plus recurrences (no per-cycle loop), backpressure as their least fixed point;
- :mod:`onebit.sim.deadlock`, :mod:`onebit.sim.fifo_sizing`: deadlocks, naming the FIFO, its depth and the
  depth it needs, and the FIFO depth every edge needs;
- :mod:`onebit.sim.steady_state`: when the schedule has become periodic, so later frames follow exactly;
- :mod:`onebit.sim.simulation`: ``simulate``: initiation interval, first-frame latency, throughput over N
  frames and the bit-exact outputs;
- :mod:`onebit.sim.report`: the per-layer table (cycles, share of the II, FIFO depth, utilisation), the
  bottleneck, frames/s and latency at a clock, as JSON, text and PNG plots;
- :mod:`onebit.sim.cli`: the ``onebit sim`` command.

Typical use::

    from onebit.export.dataflow.graph import load_dataflow
    from onebit.sim.simulation import simulate
    from onebit.sim.report import build_report, format_report

    res = simulate(load_dataflow("wrn_folded.onnx"), frames=4)     # or inputs=x (N, H, W, C) for outputs
    print(format_report(build_report(res, clock_mhz=200)))
"""
