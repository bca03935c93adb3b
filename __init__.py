"""onebit: 1-bit-per-weight Wide ResNets from quantization-aware training to FPGA dataflow.

Parts: :mod:`onebit.training` (Brevitas QAT models, data, trainer), :mod:`onebit.export`
(QONNX and dataflow graphs), :mod:`onebit.sim` (streaming simulator), :mod:`onebit.hw` (RTL and bitstreams).
"""

__version__ = "0.1.0"
