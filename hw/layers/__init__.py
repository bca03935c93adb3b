"""One RTL class per dataflow layer: its Verilog module, parameters and memory files."""

from onebit.hw.layers.base import RTL_LAYERS, RTLLayer, rtl_layer
from onebit.hw.layers import thresholding  # noqa: F401  (registers)
from onebit.hw.layers import swg  # noqa: F401  (registers)
from onebit.hw.layers import fmpadding  # noqa: F401  (registers)
from onebit.hw.layers import pool  # noqa: F401  (registers)
from onebit.hw.layers import plumbing  # noqa: F401  (registers)
from onebit.hw.layers import mvau  # noqa: F401  (registers)

__all__ = ["RTL_LAYERS", "RTLLayer", "rtl_layer"]
