"""``onebit run``: the whole flow in one command, from training to a bitstream, with stage caching and a report.

- :mod:`onebit.flow.config`: the run configuration (TOML or YAML, CLI flags on top, saved as ``run.toml``);
- :mod:`onebit.flow.engine`: stages with input stamps: unchanged stages are skipped, interrupted ones resumed;
- :mod:`onebit.flow.stages`: train, pack, export, fold, sim, hw, verify, report;
- :mod:`onebit.flow.verify`: the verification verdict per check, for ``onebit run`` and ``onebit verify``;
- :mod:`onebit.flow.cli`: the ``onebit run`` and ``onebit verify`` commands;
- :mod:`onebit.flow.report`: the self-contained HTML report.
"""
