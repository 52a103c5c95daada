"""The 2D PE array for tile contractions (output-stationary): its generator,
its bit-exact Python model and its latency formula, side by side.

Y[r, c] = sum_k A[r, k] * B[k, c] for an R x C tile of outputs, each PE
holding one output. The array takes one step k per edge: column k of A
(R words) and row k of B (C words), with `first` (start a new sum) and
`last` (the sum is complete). Inside, row r's operands are delayed r edges
and column c's c edges (the systolic skew), A and the flags travel east and
B south, one PE per edge; PE (r, c) does step k on edge k + r + c. Each
product is rounded and the sum saturated as `fixed.mac` (the order k = 0,
1, ...), so a 1D unit's MAC and a PE's agree bit for bit.

Tiles stream back to back (a tile's `first` may follow the previous one's
`last` at once: the PE moves the finished sum to its output register when
`last` passes), so the array's initiation interval is K, the simulator's
busy cycles per tile of a contraction that fills the array (N x 1 cycle /
(R x C) PEs = K); the skew adds R + C - 2 once per stream (fill and drain).

Cycle convention (docs/rtl.md): counted in rising edges, from the edge that
samples the first input to the edge that registers the last output,
inclusive: one tile K + R + C - 2, T tiles back to back T x K + R + C - 2.
"""
from __future__ import annotations

from ..names import comment_text
from . import fixed as fx
from .fixed import Fmt, RTLError


def cycles(rows: int, cols: int, k: int, tiles: int = 1) -> int:
    """Edges for `tiles` tiles of `k` steps streamed back to back."""
    return tiles * k + rows + cols - 2


def initiation_interval(k: int) -> int:
    return k


def fill_cycles(rows: int, cols: int) -> int:
    """What the skew adds to a stream of tiles: the constant beside the simulator's busy cycles."""
    return rows + cols - 2


def model(fmt: Fmt, a: list[list[int]], b: list[list[int]]) -> list[list[int]]:
    """Y = A B for A (R x K), B (K x C) in the array's arithmetic."""
    rows, k, cols = len(a), len(b), len(b[0]) if b else 0
    if any(len(r) != k for r in a):
        raise RTLError(f"A is {rows} x {[len(r) for r in a]}, B has {k} rows: the contraction extents differ")
    out = [[0] * cols for _ in range(rows)]
    for r in range(rows):
        for c in range(cols):
            acc = 0
            for j in range(k):
                acc = fx.mac(fmt, acc, a[r][j], b[j][c])
            out[r][c] = acc
    return out


def pe_verilog(name: str, fmt: Fmt, header: list[str]) -> str:
    W = fmt.width
    L = [f"// {comment_text(h)}" for h in header]
    L += ["// One PE of the output-stationary array: acc = (first ? 0 : acc) + round(a * b), saturated;",
          "// a and the flags pass east, b south, one edge per PE; `last` moves the sum to y.",
          f"// Number format: {fmt.name}",
          f"module {name} (",
          "  input wire clk, input wire rst,",
          f"  input wire signed [{W-1}:0] a_in, input wire signed [{W-1}:0] b_in,",
          "  input wire v_in, input wire first_in, input wire last_in,",
          f"  output reg signed [{W-1}:0] a_out, output reg signed [{W-1}:0] b_out,",
          "  output reg v_out, output reg first_out, output reg last_out,",
          f"  output reg signed [{W-1}:0] y, output reg y_valid",
          ");"]
    L += ["  " + x for x in fx.verilog_functions(fmt)]
    L += [f"  reg signed [{W-1}:0] acc;",
          f"  wire signed [{W-1}:0] sum = fx_add(first_in ? {fx.lit(0, W)} : acc, fx_mul(a_in, b_in));",
          "  always @(posedge clk) begin",
          "    if (rst) begin",
          "      acc <= 0; y <= 0; y_valid <= 1'b0; a_out <= 0; b_out <= 0;",
          "      v_out <= 1'b0; first_out <= 1'b0; last_out <= 1'b0;",
          "    end else begin",
          "      a_out <= a_in; b_out <= b_in; v_out <= v_in; first_out <= first_in; last_out <= last_in;",
          "      y_valid <= v_in && last_in;",
          "      if (v_in) begin",
          "        acc <= sum;",
          "        if (last_in) y <= sum;",
          "      end",
          "    end",
          "  end",
          "endmodule", ""]
    return "\n".join(L)


def _skew(lanes: str, bits: str, src: str, out: str, label: str) -> list[str]:
    """Verilog generate block: lane i of `src` (`bits` wide) delayed i edges
    into `out[i]` (a chain of i registers, reset to 0; none for lane 0)."""
    return [f"    for (i = 0; i < {lanes}; i = i + 1) begin : {label}",
            f"      wire [{bits}-1:0] tap [0:i];",
            f"      assign tap[0] = {src};",
            "      for (d = 1; d <= i; d = d + 1) begin : dly",
            f"        reg [{bits}-1:0] q;",
            f"        always @(posedge clk) q <= rst ? {{({bits}){{1'b0}}}} : tap[d-1];",
            "        assign tap[d] = q;",
            "      end",
            f"      assign {out}[i] = tap[i];",
            "    end"]


def array_verilog(name: str, pe: str, fmt: Fmt, rows: int, cols: int, header: list[str]) -> str:
    W = fmt.width
    L = [f"// {comment_text(h)}" for h in header]
    L += [f"// Output-stationary {rows} x {cols} PE array (parameters R, C), number format {fmt.name}.",
          "// Step k: a_col = A[:, k] (row r at bits r*W +: W), b_row = B[k, :], with valid/first/last.",
          "// Latency: K + R + C - 2 edges (first input sampled .. last output registered); II: K.",
          f"module {name} #(parameter integer R = {rows}, parameter integer C = {cols}) (",
          "  input wire clk, input wire rst,",
          f"  input wire [R*{W}-1:0] a_col, input wire [C*{W}-1:0] b_row,",
          "  input wire valid, input wire first, input wire last,",
          f"  output wire [R*C*{W}-1:0] y, output wire [R*C-1:0] y_valid",
          ");",
          f"  localparam integer W = {W};",
          "  // skew: row r's operand and flags delayed r edges, column c's operand c edges",
          "  wire [W+2:0] a_sk [0:R-1];",
          "  wire [W-1:0] b_sk [0:C-1];",
          "  wire [W-1:0] a_h [0:R-1][0:C];",
          "  wire [2:0] f_h [0:R-1][0:C];",
          "  wire [W-1:0] b_v [0:R][0:C-1];",
          "  genvar r, c, i, d;",
          "  generate"]
    L += _skew("R", "W+3", "{valid, first, last, a_col[i*W +: W]}", "a_sk", "askew")
    L += _skew("C", "W", "b_row[i*W +: W]", "b_sk", "bskew")
    L += ["    for (r = 0; r < R; r = r + 1) begin : rows",
          "      assign a_h[r][0] = a_sk[r][W-1:0];",
          "      assign f_h[r][0] = a_sk[r][W+2:W];",
          "    end",
          "    for (c = 0; c < C; c = c + 1) begin : cols",
          "      assign b_v[0][c] = b_sk[c];",
          "    end",
          "    for (r = 0; r < R; r = r + 1) begin : pr",
          "      for (c = 0; c < C; c = c + 1) begin : pc",
          f"        {pe} u (.clk(clk), .rst(rst), .a_in(a_h[r][c]), .b_in(b_v[r][c]),",
          "          .v_in(f_h[r][c][2]), .first_in(f_h[r][c][1]), .last_in(f_h[r][c][0]),",
          "          .a_out(a_h[r][c+1]), .b_out(b_v[r+1][c]), .v_out(f_h[r][c+1][2]),",
          "          .first_out(f_h[r][c+1][1]), .last_out(f_h[r][c+1][0]),",
          "          .y(y[(r*C+c)*W +: W]), .y_valid(y_valid[r*C+c]));",
          "      end",
          "    end",
          "  endgenerate",
          "endmodule", ""]
    return "\n".join(L)


# ---------------------------------------------------------------- weight-stationary

def ws_initiation_interval(rows: int, n: int) -> int:
    """Edges between the first A rows of consecutive tiles: the stream of n
    rows, or the R weight rows the next tile loads (one per edge), at least 2."""
    return max(n, rows, 2)


def ws_cycles(rows: int, cols: int, ns: list[int]) -> int:
    """Edges for tiles of ns[j] A rows back to back, from the first weight
    write (one edge before the first A row) to the last output row."""
    return 1 + sum(ws_initiation_interval(rows, n) for n in ns[:-1]) + ns[-1] + rows + cols - 2


def ws_pe_verilog(name: str, fmt: Fmt, header: list[str]) -> str:
    W = fmt.width
    L = [f"// {comment_text(h)}" for h in header]
    L += ["// One PE of the weight-stationary array: holds B[k, c] (active and shadow registers);",
          "// psum_out = psum_in + round(a * w), saturated; a and the flags pass east, psum south.",
          "// A tile's `first` A row swaps the shadow weight in as it passes (the product uses it at once).",
          f"// Number format: {fmt.name}",
          f"module {name} (",
          "  input wire clk, input wire rst,",
          f"  input wire signed [{W-1}:0] a_in, input wire v_in, input wire first_in,",
          f"  input wire signed [{W-1}:0] psum_in, input wire we_in, input wire signed [{W-1}:0] w_in,",
          f"  output reg signed [{W-1}:0] a_out, output reg v_out, output reg first_out,",
          f"  output reg signed [{W-1}:0] psum_out, output reg we_out",
          ");"]
    L += ["  " + x for x in fx.verilog_functions(fmt)]
    L += [f"  reg signed [{W-1}:0] w_sh, w_act;",
          f"  wire signed [{W-1}:0] w_use = first_in ? w_sh : w_act;",
          "  always @(posedge clk) begin",
          "    if (rst) begin",
          "      a_out <= 0; v_out <= 1'b0; first_out <= 1'b0; psum_out <= 0; we_out <= 1'b0;",
          "      w_sh <= 0; w_act <= 0;",
          "    end else begin",
          "      a_out <= a_in; v_out <= v_in; first_out <= first_in; we_out <= we_in;",
          "      psum_out <= fx_add(psum_in, fx_mul(a_in, w_use));",
          "      if (we_in) w_sh <= w_in;",
          "      if (v_in && first_in) w_act <= w_sh;",
          "    end",
          "  end",
          "endmodule", ""]
    return "\n".join(L)


def ws_array_verilog(name: str, pe: str, fmt: Fmt, rows: int, cols: int, header: list[str]) -> str:
    W = fmt.width
    L = [f"// {comment_text(h)}" for h in header]
    L += [f"// Weight-stationary {rows} x {cols} PE array (parameters R, C), number format {fmt.name}.",
          "// PE (k, c) holds B[k, c]. Weights: w_we with w_k = k and w_row = B[k, :] writes row k's",
          "// shadow registers (column c c edges later). A tile's row k is written in the edges",
          "// s_j + k + 1 .. s_{j+1} + k - 1 (s_j: the edge its first A row enters); rows beyond K are 0.",
          "// Stream: a_row = A[i, :] (lane k at bits k*W +: W), valid, first (the tile's row 0).",
          "// Out: y_row = Y[i, :] with y_valid, R + C - 2 edges after A[i, :] entered (deskewed).",
          "// Latency: 1 + N + R + C - 2 edges (first weight write .. last output row); II: max(N, R, 2).",
          f"module {name} #(parameter integer R = {rows}, parameter integer C = {cols}) (",
          "  input wire clk, input wire rst,",
          f"  input wire w_we, input wire [31:0] w_k, input wire [C*{W}-1:0] w_row,",
          f"  input wire [R*{W}-1:0] a_row, input wire valid, input wire first,",
          f"  output wire [C*{W}-1:0] y_row, output wire y_valid",
          ");",
          f"  localparam integer W = {W};",
          "  wire [W+1:0] a_sk [0:R-1];          // row k's A lane and flags, delayed k edges",
          "  wire [W-1:0] w_sk [0:C-1];          // column c's weight word, delayed c edges",
          "  wire [W:0] y_sk [0:C-1];            // lane i: column C-1-i's result, delayed i edges",
          "  wire [W-1:0] a_h [0:R-1][0:C];",
          "  wire [1:0] f_h [0:R-1][0:C];",
          "  wire we_h [0:R-1][0:C];",
          "  wire [W-1:0] p_v [0:R][0:C-1];",
          "  wire v_v [0:R-1][0:C-1];",
          "  genvar r, c, i, d;",
          "  generate"]
    L += _skew("R", "W+2", "{valid, first, a_row[i*W +: W]}", "a_sk", "askew")
    L += _skew("C", "W", "w_row[i*W +: W]", "w_sk", "wskew")
    L += _skew("C", "W+1", "{v_v[R-1][C-1-i], p_v[R][C-1-i]}", "y_sk", "yskew")
    L += ["    for (r = 0; r < R; r = r + 1) begin : rows",
          "      assign a_h[r][0] = a_sk[r][W-1:0];",
          "      assign f_h[r][0] = a_sk[r][W+1:W];",
          "      assign we_h[r][0] = w_we && (w_k == r);",
          "    end",
          "    for (c = 0; c < C; c = c + 1) begin : cols",
          f"      assign p_v[0][c] = {fx.lit(0, W)};",
          "      assign y_row[c*W +: W] = y_sk[C-1-c][W-1:0];",
          "    end",
          "    for (r = 0; r < R; r = r + 1) begin : pr",
          "      for (c = 0; c < C; c = c + 1) begin : pc",
          f"        {pe} u (.clk(clk), .rst(rst), .a_in(a_h[r][c]), .v_in(f_h[r][c][1]), .first_in(f_h[r][c][0]),",
          "          .psum_in(p_v[r][c]), .we_in(we_h[r][c]), .w_in(w_sk[c]),",
          "          .a_out(a_h[r][c+1]), .v_out(v_v[r][c]), .first_out(f_h[r][c+1][0]),",
          "          .psum_out(p_v[r+1][c]), .we_out(we_h[r][c+1]));",
          "        assign f_h[r][c+1][1] = v_v[r][c];",
          "      end",
          "    end",
          "  endgenerate",
          "  assign y_valid = y_sk[0][W];",
          "endmodule", ""]
    return "\n".join(L)
