"""The dataflow graph's HW layers, one class each. This module is also a qonnx custom-op domain
(``onebit.export.dataflow.ops``): qonnx and FINN+ execute onebit's own ops (ChannelPad) through ``custom_op``."""

from onebit.export.dataflow.ops.channelpad import ChannelPad
from onebit.export.dataflow.ops.duplicatestreams import DuplicateStreams
from onebit.export.dataflow.ops.dwc import StreamingDataWidthConverter
from onebit.export.dataflow.ops.elementwiseadd import ElementwiseAdd
from onebit.export.dataflow.ops.fifo import StreamingFIFO
from onebit.export.dataflow.ops.fmpadding import FMPadding
from onebit.export.dataflow.ops.globalaccpool import GlobalAccPool
from onebit.export.dataflow.ops.labelselect import LabelSelect
from onebit.export.dataflow.ops.mvau import MVAU
from onebit.export.dataflow.ops.pool import Pool
from onebit.export.dataflow.ops.swg import ConvolutionInputGenerator
from onebit.export.dataflow.ops.thresholding import Thresholding

OPS = {cls.op_type: cls for cls in (
    MVAU, Thresholding, ConvolutionInputGenerator, FMPadding, Pool, DuplicateStreams, ElementwiseAdd,
    ChannelPad, GlobalAccPool, LabelSelect, StreamingDataWidthConverter, StreamingFIFO)}
OPS["AddStreams"] = ElementwiseAdd  # upstream FINN's name for the same join

#: qonnx's registry reads this dict when a node's domain is this module.
custom_op = {"ChannelPad": ChannelPad}
