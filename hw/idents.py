"""Names in generated code: what a graph calls a node never reaches Verilog, scripts or file names as it is.

A node's name is user text (newlines, quotes, ``*/``, ``$system(...)``, any unicode). Every identifier,
comment, file name and memory path generated from it comes from :func:`verilog_idents`: ASCII letters, digits
and underscores, not starting with a digit, at most ``MAX_LEN`` characters, never a Verilog/SystemVerilog
keyword nor a name the generated top level uses itself, and distinct across the graph even where the file
system ignores case. The original names stay in ``design.json`` (as JSON strings) and in error messages.
"""

from __future__ import annotations

import re

from onebit.errors import GraphError

MAX_LEN = 48
_BASE_LEN = MAX_LEN - 8  # room for a "_<n>" suffix that makes a name distinct
PREFIX = "n_"  # in front of a name that would be a keyword, a reserved name or start with a digit

#: IEEE 1800-2017 reserved keywords (a superset of Verilog-2005's), as Verilator reads .v files
KEYWORDS = frozenset("""
accept_on alias always always_comb always_ff always_latch and assert assign assume automatic before begin bind
bins binsof bit break buf bufif0 bufif1 byte case casex casez cell chandle checker class clocking cmos config
const constraint context continue cover covergroup coverpoint cross deassign default defparam design disable dist
do edge else end endcase endchecker endclass endclocking endconfig endfunction endgenerate endgroup endinterface
endmodule endpackage endprimitive endprogram endproperty endspecify endsequence endtable endtask enum event
eventually expect export extends extern final first_match for force foreach forever fork forkjoin function
generate genvar global highz0 highz1 if iff ifnone ignore_bins illegal_bins implements implies import incdir
include initial inout input inside instance int integer interconnect interface intersect join join_any join_none
large let liblist library local localparam logic longint macromodule matches medium modport module nand negedge
nettype new nexttime nmos nor noshowcancelled not notif0 notif1 null or output package packed parameter pmos
posedge primitive priority program property protected pull0 pull1 pulldown pullup pulsestyle_ondetect
pulsestyle_onevent pure rand randc randcase randsequence rcmos real realtime ref reg reject_on release repeat
restrict return rnmos rpmos rtran rtranif0 rtranif1 s_always s_eventually s_nexttime s_until s_until_with
scalared sequence shortint shortreal showcancelled signed small soft solve specify specparam static string strong
strong0 strong1 struct super supply0 supply1 sync_accept_on sync_reject_on table tagged task this throughout time
timeprecision timeunit tran tranif0 tranif1 tri tri0 tri1 triand trior trireg type typedef union unique unique0
unsigned until until_with untyped use uwire var vectored virtual void wait wait_order wand weak weak0 weak1 while
wildcard wire with within wor xnor xor
""".split())  # noqa: SIM905

#: names the generated top level declares itself (ports, edge wires ``e<k>_*``, ``fifo<k>``, ``tap<k>``)
_RESERVED = re.compile(r"(clk|rst|in_valid|in_ready|in_data|out_valid|out_room|out_data|tap_cycle|dut|top"
                       r"|e\d+_.*|fifo\d+|tap\d+|onebit_.*)", re.IGNORECASE)
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: what a string parameter (a memory path built from an identifier) may hold
PARAM_STRING = re.compile(r"[A-Za-z0-9_/.]+")


def _base(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_]", "_", name)[:_BASE_LEN]
    if not s or s[0].isdigit() or s.lower() in KEYWORDS or _RESERVED.fullmatch(s):
        s = (PREFIX + s)[:_BASE_LEN]
    return s


def verilog_idents(names: list[str]) -> list[str]:
    """One identifier per name, in order: sanitised, bounded, and distinct (case-insensitively: memory files
    are named after them); a name that collides with an earlier one after sanitising gets ``_<n>``."""
    used: set[str] = set()
    out = []
    for name in names:
        base = _base(str(name))
        ident, n = base, 1
        while ident.lower() in used:
            ident, n = f"{base}_{n}", n + 1
        used.add(ident.lower())
        out.append(ident)
    return out


def verilog_ident(name: str) -> str:
    """The identifier of a single name (unique only among itself; a whole graph uses :func:`verilog_idents`)."""
    return verilog_idents([name])[0]


def comment(text: str) -> str:
    """Text safe inside a ``//`` or ``/* */`` comment: printable ASCII only, no ``*/`` or ``/*``."""
    s = re.sub(r"[^ -~]", "?", str(text))
    return s.replace("*/", "*?").replace("/*", "?*")


def param_string(value: str, where: str) -> str:
    """A Verilog string parameter's literal, refusing anything beyond [A-Za-z0-9_/.]."""
    if not PARAM_STRING.fullmatch(value):
        raise GraphError(f"{where}: string parameter {value!r} holds characters outside [A-Za-z0-9_/.]")
    return f'"{value}"'
