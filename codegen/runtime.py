"""Running a generated kernel: source cached on disk by its hash and
imported, hoisted Einsums evaluated, block tables built from the exact tile
classes, outputs allocated, the grid launched (and the split-KV combine)."""
from __future__ import annotations

import hashlib
import linecache
import os
import sys
import tempfile
import types
from pathlib import Path

import numpy as np

from einsum_ir.analysis.fused import FusedForm, recognise
from einsum_ir.analysis.tile_program import packed_tile_classes, tile_program
from einsum_ir.analysis.tiles import FULL, PARTIAL, cell_counts, classify, launch_order, mask_tiles, over_batch
from einsum_ir.errors import EinError, ExecutionError, ShapeError
from einsum_ir.ir import Access, Cascade, Idx, Op, walk
from einsum_ir.shapes import resolve
from mappers.gpu_mapping import GPUMapping

from .triton import KernelSource, _has_gather, generate

class CacheError(EinError):
    """The kernel cache cannot be trusted (writable by others, not the user's)."""


def cache_dir() -> Path:
    """The kernel cache, `$ATTNC_CACHE` or `~/.cache/attnc/triton`, read at
    each use (tests point it at a temporary directory). It holds code that is
    imported, so it must be the user's and writable by nobody else."""
    d = Path(os.environ.get("ATTNC_CACHE") or Path.home() / ".cache" / "attnc" / "triton")
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = d.stat()
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise CacheError(f"the kernel cache {d} belongs to another user: refusing to import code from it "
                         "(set ATTNC_CACHE to a directory of your own)")
    if st.st_mode & 0o022:
        raise CacheError(f"the kernel cache {d} is writable by others (mode {st.st_mode & 0o777:o}): refusing to "
                         f"import code from it (chmod go-w {d}, or set ATTNC_CACHE to a private directory)")
    return d


def cache_key(c: Cascade, m: GPUMapping, env: dict) -> str:
    """Hash of the cascade's text, the mapping and the shapes."""
    text = f"{c}\n{m!r}\n{sorted(env.items())}"
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _import(path: Path, name: str, text: str):
    """A module from `text`, compiled here: no bytecode is read from the cache
    (a planted `__pycache__/*.pyc` beside the file is never used). The file
    stays because Triton reads a kernel's source from it; it holds `text`."""
    mod = types.ModuleType(name)
    mod.__file__ = str(path)
    sys.modules[name] = mod
    linecache.checkcache(str(path))
    exec(compile(text, str(path), "exec", dont_inherit=True), mod.__dict__)
    return mod


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _cached_module(key: str, text: str):
    """The generated source written to the disk cache and imported, after
    checking that the file holds exactly `text` (by content hash). Written
    through a new file of an unpredictable name (O_EXCL), then renamed."""
    d = cache_dir()
    path = d / f"attnc_{key}.py"
    want = _digest(text.encode())
    for _ in range(2):
        if path.is_file() and not path.is_symlink() and _digest(path.read_bytes()) == want:
            return _import(path, f"attnc_kernel_{key}", text)
        fd, tmp = tempfile.mkstemp(dir=d, prefix=f".attnc_{key}.", suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    raise CacheError(f"the kernel cache file {path} changes under attnc: refusing to import it")


def scalar_arg(v):
    """A shape symbol as a kernel argument: a whole number as an int (extents,
    offsets), anything else as a float (a gate LAM = 0.75 is not 0)."""
    return int(v) if float(v).is_integer() else float(v)


def _check_names(c: Cascade, inputs: dict):
    names = {t.name for t in c.inputs}
    missing = sorted(names - inputs.keys())
    if missing:
        raise ShapeError(f"missing input{'s' * (len(missing) > 1)}: {', '.join(missing)}")
    unknown = sorted(inputs.keys() - names)
    if unknown:
        raise ShapeError(f"{unknown[0]} is not an input of {c.name}; its inputs are {', '.join(sorted(names))}")
    _check_devices(inputs)


def _check_devices(inputs: dict):
    """One device for all inputs, and one Triton can run on: a GPU, or the
    CPU under Triton's interpreter (without it, Triton finds no driver and
    says nothing the user can act on)."""
    devices = {str(t.device) for t in inputs.values()}
    if len(devices) > 1:
        where = ", ".join(f"{n} on {t.device}" for n, t in inputs.items())
        raise ExecutionError(f"the inputs are on different devices ({where}): move them to one")
    if devices == {"cpu"} and os.environ.get("TRITON_INTERPRET") != "1":
        raise ExecutionError("the inputs are on the CPU, and Triton runs kernels on a GPU: move them there "
                             "(tensor.cuda()), or set TRITON_INTERPRET=1 in the environment before the first "
                             "compile to run the kernel in Triton's CPU interpreter (slow: for small shapes "
                             "and tests)")


def compile_kernel(c: Cascade, mapping: GPUMapping, shapes: dict | None = None):
    """The kernel family the design fits: fused attention, else chunked linear
    attention; a design that fits neither gets both reasons."""
    from einsum_ir.analysis.chunked import ChunkedFormError
    from einsum_ir.analysis.chunked import recognise as recognise_chunked
    from einsum_ir.analysis.fused import FusedFormError, refused_by_both
    env = _extents(c, shapes)
    try:
        return FusedKernel(c, mapping, shapes)
    except FusedFormError as fused:
        try:
            recognise_chunked(c, env)
            kernel = ChunkedKernel(c, mapping, shapes)
            if env is not None:
                kernel.source(env)          # what only the generator can check, said now, not at the first call
        except ChunkedFormError as chunked:
            raise refused_by_both(c, fused, chunked) from None
        return kernel


def _extents(c: Cascade, shapes: dict | None) -> dict | None:
    try:
        return resolve(c, shapes or {})
    except ShapeError:
        return None


class GatherRangeError(ExecutionError):
    """A fused kernel found a gathered index out of its tensor's range."""


def _locate_gather(c: Cascade, shapes: dict, inputs: dict, err: GatherRangeError):
    """Raise the reference executor's error for the same inputs, which names
    the tensor, the Einsum and one offending point; `err` itself where the
    executor cannot run them (too large) or finds nothing at the points
    that exist (the kernel checks a gather wherever the tile's ranks are in
    range, also under a predicate that would have removed the point)."""
    from einsum_ir.execute import execute
    try:
        execute(c, {k: v.detach().double().cpu().numpy() for k, v in inputs.items()}, shapes)
    except ExecutionError as found:
        if "index out of range" in found.message or "gathered" in found.message or "computed index" in found.message:
            raise found from None
    except ShapeError:
        pass
    raise err


class FusedKernel:
    """A compiled design: call it with torch tensors by input name; returns
    the output tensor (or a dict when the design has several outputs)."""

    def __init__(self, c: Cascade, mapping: GPUMapping, shapes: dict | None = None):
        from einsum_ir.unroll import constant_indexed_ranks
        env = _extents(c, shapes)
        self.form: FusedForm = recognise(c, env)
        self.program = tile_program(self.form)     # what runs: rendered here, charged by simulator.gpu
        self.cascade = self.form.cascade            # with component ranks unrolled, if any
        self.unrolled = {r: int(env[r]) for r in constant_indexed_ranks(c)}
        self.mapping = mapping
        self.shapes = dict(shapes or {})
        self._modules: dict[str, object] = {}
        self._tables: dict = {}
        self._plans: dict = {}
        self._buffers: dict = {}
        self.reads_tensors = self._reads_tensors()

    def predict(self, gpu, env: dict, inputs: dict | None = None):
        """The GPU model's prediction for this kernel: it charges the same
        tile program the kernel is rendered from."""
        from simulator.gpu import predict_fused
        return predict_fused(self.program, self._mapping_for(env), gpu, env, inputs)

    def source(self, env: dict) -> KernelSource:
        return generate(self.program, self._mapping_for(env), env)

    def _mapping_for(self, env: dict) -> GPUMapping:
        m = self.mapping
        if self.form.query is None and m.block_m != 16:
            m = m.with_changes(block_m=16)
        if not self.form.splittable and m.splits > 1:      # several passes, or a scan carried along the walk
            m = m.with_changes(splits=1)
        return m

    def module(self, env: dict):
        m = self._mapping_for(env)
        from .triton import wide_tensors
        # the source depends on the contracted and feature extents and on which
        # tensors need 64-bit offsets: one module per combination
        dims = [self.form.contracted, self.form.feature or ""] + [s.contracted for s in self.form.scores]
        shapes = {k: env[k] for k in (v.upper() for v in dims) if k in env}
        wide = wide_tensors(self.cascade, env)
        if wide:
            shapes["64-bit"] = ",".join(sorted(wide))
        key = cache_key(self.cascade, m, shapes)
        if key not in self._modules:
            src = generate(self.program, m, env)
            self._modules[key] = (_cached_module(key, src.text), src)
        return self._modules[key]

    # -- block tables ---------------------------------------------------------------
    def _reads_tensors(self) -> bool:
        f = self.form
        return any(isinstance(n, Access) for k in range(f.passes) for p in f.predicates(k)
                   if p is not None for n in walk(p))

    def mask_values(self, inputs: dict) -> dict:
        """The inputs the predicates read, as host arrays (the block table's
        source; nothing else is copied from the device)."""
        read = {n.tensor for k in range(self.form.passes) for p in self.form.predicates(k)
                if p is not None for n in walk(p) if isinstance(n, Access)}
        return {k: v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)
                for k, v in inputs.items() if k in read}

    def tables(self, env: dict, inputs_np: dict | None, device):
        """Per pass: (full and partial key-tile counts and lists per query
        tile, batch stride, key tiles), from the exact tile classes; for a
        mask that reads tensors, from their values, cached by their hash."""
        return self._cached_tables(env, inputs_np, device)[0]

    def launch_order(self, env: dict, inputs_np: dict | None, device):
        """The programs' launch order (tiles.launch_order: most key tiles
        first), from the same block tables and cached with them; the kernel
        maps its launch index through it and the GPU model schedules in it."""
        return self._cached_tables(env, inputs_np, device)[1]

    def _cached_tables(self, env: dict, inputs_np: dict | None, device) -> tuple:
        from einsum_ir.analysis.density import digest
        m = self._mapping_for(env)
        values = dict(inputs_np or {}) if self.reads_tensors else {}
        key = (tuple(sorted(env.items())), m.block_m, m.block_n, m.pack_heads, str(device),
               digest(values) if values else None)
        if key not in self._tables:
            if len(self._tables) > 32:
                self._tables.clear()
            tabs = self._build_tables(env, values or None, device, m)
            self._tables[key] = (tabs, self._launch_order(env, tabs, device, m))
        return self._tables[key]

    def _grid(self, env: dict, m) -> tuple[int, int]:
        """(row tiles, batch programs) of the launch: with GQA / MQA packing,
        a program's rows are (query, head of the group) and there are heads /
        pack batch programs."""
        f = self.form
        rows = 1 if f.query is None else int(env[f.query.upper()])
        pack = self.program.pack_count(m.pack_heads, env)
        return -(-rows * pack // m.block_m), int(np.prod([env[v.upper()] for v in f.batch])) // pack

    def _launch_order(self, env: dict, tabs: list, device, m):
        import torch
        counts = sum(t[0].cpu().numpy().astype(np.int64) + t[2].cpu().numpy() for t, _, _ in tabs)
        nbatch = self._grid(env, m)[1]
        counts = np.broadcast_to(counts.reshape(-1, counts.shape[-1]), (nbatch, counts.shape[-1]))
        return torch.tensor(launch_order(counts).astype(np.int32), device=device)

    def _build_tables(self, env: dict, values: dict | None, device, m) -> list:
        import torch
        f, out = self.form, []
        for k in range(f.passes):
            cc = cell_counts(f, k, env, values)
            if cc.unknown:
                inputs = {t.name for t in self.cascade.inputs}
                computed = [t for t in cc.unknown if t not in inputs]
                if computed:
                    raise ShapeError(f"a predicate of pass {k} reads {', '.join(computed)}, computed by the "
                                     "cascade: the kernel's block table is built before it runs, from inputs "
                                     "only, so this design has no fused kernel (write the condition over "
                                     "inputs and coordinates, or as a select in the Einsum)")
                raise ShapeError(f"the mask reads {', '.join(cc.unknown)}: the kernel's block table needs "
                                 "their values")
            pack = self.program.pack_count(m.pack_heads, env)
            if pack > 1:     # GQA / MQA: packed row tiles (the GPU model charges the same table)
                rows = 1 if f.query is None else int(env[f.query.upper()])
                cls = packed_tile_classes(cc, m.block_m, m.block_n, pack, rows)
            else:
                cls = classify(cc, m.block_m, m.block_n)
            # leading axes: the batch variables the predicates read; the kernel indexes the table by
            # every batch coordinate (head blocks when packed), or one table for all
            var = getattr(self.program.packing, "var", None) if pack > 1 else None
            spread = (lambda a: a.reshape([-1] + list(a.shape[len(cc.batch):]))) if not cc.batch else (
                lambda a: over_batch(a, cc.batch, f.batch,
                                     {v: int(env[v.upper()]) // (pack if v == var else 1) for v in f.batch}))
            masks = []
            if self.program.uses_mask_table(k, pack):    # partial tiles read their masks (tiles.mask_tiles)
                mt, base = mask_tiles(f, k, env, cls, cc.batch, m.block_m, m.block_n, values)
                masks = [torch.tensor(mt, device=device), torch.tensor(np.ascontiguousarray(spread(base)),
                                                                       device=device)]
            cls = spread(cls)
            nb = cls.shape[0]
            rows, kt = cls.shape[-2:]
            tabs = []
            for want in (FULL, PARTIAL):
                hit = cls == want
                cnt = hit.sum(-1).astype(np.int32)
                idx = np.argsort(~hit, axis=-1, kind="stable").astype(np.int32)
                tabs += [torch.tensor(cnt, device=device), torch.tensor(idx, device=device)]
            bs = rows * kt if nb > 1 else 0
            out.append((tabs + masks, bs, kt))
        return out

    # -- calling ----------------------------------------------------------------------
    def __call__(self, **inputs):
        import torch
        c, f = self.cascade, self.form
        # everything that depends only on the inputs' shapes is prepared once per shape
        key = tuple((n, tuple(t.shape), t.dtype, str(t.device)) for n, t in inputs.items())
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self._plan(inputs)
        env, mod, src, m, grid_m, nbatch, meta, launch, static = plan
        tensors = dict(inputs)
        if f.hoisted:
            tensors.update(_hoisted(c, f, env, inputs))
        q = _float_input(inputs)
        outs = {t.name: torch.empty(shape, dtype=q.dtype, device=q.device) for t, shape in _output_shapes(c, env)}
        args = []
        for name in src.tma:
            _check_tma(name, tensors[name])
        for name in src.tensors:
            args += _tensor_args(tensors[name])
        for name in src.outputs:
            args += _tensor_args(outs[name])
        lead = len(args) + len(src.symbols)
        args += static
        if self.reads_tensors:            # block masks: the tables depend on the values (cached by their hash)
            args += self._table_args(env, self.mask_values(inputs), q.device)
        with np.errstate(all="ignore"):   # the interpreter computes padding rows too (0/0 there is masked)
            try:
                self._launch(mod, src, m, args, lead, grid_m, nbatch, meta, launch, q.device)
            except GatherRangeError as err:
                _locate_gather(c, self.shapes, inputs, err)
        return outs[c.outputs[0].name] if len(outs) == 1 else outs

    def _plan(self, inputs: dict) -> tuple:
        c = self.cascade
        _check_names(c, inputs)
        env = resolve(c, self.shapes, inputs)
        for r, n in self.unrolled.items():
            if env[r] != n:
                raise ShapeError(f"this kernel was compiled with {r} = {n} components unrolled; the inputs give "
                                 f"{r} = {env[r]}: compile it again for that shape")
        device = next(iter(inputs.values())).device
        mod, src = self.module(env)
        m = self._mapping_for(env)
        static = [scalar_arg(env[s]) for s in src.symbols]
        if not self.reads_tensors:
            static += self._table_args(env, None, device)
        grid_m, nbatch = self._grid(env, m)
        meta = dict(BLOCK_M=m.block_m, BLOCK_N=m.block_n, BLOCK_E=src.block_e, BLOCK_F=src.block_f,
                    SPLITS=src.splits, **src.blocks)
        launch = {} if os.environ.get("TRITON_INTERPRET") == "1" else dict(num_warps=m.warps, num_stages=m.stages)
        if src.tma and launch:
            _tma_allocator(device)
        return env, mod, src, m, grid_m, nbatch, meta, launch, static

    def _table_args(self, env: dict, values: dict | None, device) -> list:
        """The kernel's arguments after its symbols: per pass the block table
        (full and partial counts and lists, batch stride, key tiles, then the
        partial tiles' masks and their first index where the pass reads them),
        then the launch order."""
        args = []
        for tabs, bs, kt in self.tables(env, values, device):
            args += tabs[:4] + [bs, kt] + tabs[4:]
        return args + [self.launch_order(env, values, device)]

    def _scratch(self, name: str, n: int, dtype, device):
        """A work buffer kept across calls (split-KV partials, the gather
        flag): no allocation on the hot path beyond the outputs. Calls on one
        stream run in order, so the next call overwrites it only after the
        combine kernel has read it."""
        import torch
        key = (name, n, dtype, str(device))
        buf = self._buffers.get(key)
        if buf is None:
            buf = self._buffers[key] = torch.empty(n, dtype=dtype, device=device)
        return buf

    def _launch(self, mod, src, m, args, lead, grid_m, nbatch, meta, launch, device):
        import torch
        f = self.form
        err = {}
        if src.gathers or _has_gather(self.cascade):    # the kernel's signature has the flag (a gather read
            # from a mask table is checked on the host, when the table is built): it records a gather out of
            # range here (see Generator._flag_gather)
            err = dict(gather_err=self._scratch("gather_err", 1, torch.int32, device).zero_())
        if src.splits > 1:
            per = sum(m.block_m * (src.block_f if kind == "feature" else 1) for _, kind in src.partials)
            part = self._scratch("partials", nbatch * grid_m * src.splits * per, torch.float32, device)
            mod.attnc_fused[(grid_m, nbatch, src.splits)](*args, part, per, **err, **meta, **launch)
            cargs = args[:lead]            # tensors and symbols: the combine reads no block table
            mod.attnc_combine[(grid_m, nbatch)](*cargs, part, per, **err, BLOCK_M=m.block_m, BLOCK_F=src.block_f,
                                                 SPLITS=src.splits, **launch)
        else:
            mod.attnc_fused[(grid_m, nbatch, 1)](*args, **err, **meta, **launch)
        if err and int(err["gather_err"].item()):
            site = src.gathers[int(err["gather_err"].item()) - 1][0]
            einsum = next((e.name for e in self.cascade.einsums if site in e.reads()), "?")
            raise GatherRangeError(f"index out of range: the kernel read {site} (Einsum {einsum}) at a gathered "
                                   "or computed index outside the tensor (or a floor( ) or ceil( ) in it not finite), "
                                   "at a point in range of the tile's ranks; a gather is never clipped", site.loc,
                                   self.cascade.source)


class ChunkedKernel:
    """A compiled linear-time design (codegen.chunked): one program per batch
    coordinate walks the sequence in chunks. Called like FusedKernel."""

    def __init__(self, c: Cascade, mapping: GPUMapping, shapes: dict | None = None):
        from einsum_ir.analysis.chunked import recognise as recognise_chunked
        self.cascade = c
        self.mapping = mapping
        self.shapes = dict(shapes or {})
        self._recognise = recognise_chunked
        self._programs: dict = {}
        self._modules: dict[str, tuple] = {}
        self._plans: dict = {}

    def program_for(self, env: dict):
        """The chunk program at extents `env` (its blocks depend on them):
        rendered by `source`, charged by `predict`; made once per extents."""
        from einsum_ir.analysis.chunk_program import chunk_program
        key = tuple(sorted(env.items()))
        if key not in self._programs:
            self._programs[key] = chunk_program(self._recognise(self.cascade, env), env, self.mapping.block_n)
        return self._programs[key]

    @property
    def program(self):
        """The chunk program at the compile shapes (None when they do not give every extent)."""
        env = _extents(self.cascade, self.shapes)
        return None if env is None else self.program_for(env)

    def source(self, env: dict):
        from .chunked import generate as generate_chunked
        return generate_chunked(self.program_for(env), self.mapping, env)

    def predict(self, gpu, env: dict, inputs: dict | None = None):
        """The GPU model's prediction for this kernel: it charges the same
        chunk program the kernel is rendered from."""
        from simulator.gpu import predict_chunked
        return predict_chunked(self.program_for(env), self.mapping, gpu, env)

    def module(self, env: dict):
        key = cache_key(self.cascade, self.mapping, env)
        if key not in self._modules:
            src = self.source(env)
            self._modules[key] = (_cached_module(key, src.text), src)
        return self._modules[key]

    def __call__(self, **inputs):
        import torch
        c = self.cascade
        key = tuple((n, tuple(t.shape), t.dtype, str(t.device)) for n, t in inputs.items())
        plan = self._plans.get(key)
        if plan is None:
            _check_names(c, inputs)
            env = resolve(c, self.shapes, inputs)
            mod, src = self.module(env)
            nbatch = int(np.prod([env[v.upper()] for v in src.form.batch]))
            launch = {} if os.environ.get("TRITON_INTERPRET") == "1" else dict(num_warps=self.mapping.warps,
                                                                             num_stages=self.mapping.stages)
            plan = self._plans[key] = (env, mod, src, nbatch, launch, [scalar_arg(env[s]) for s in src.symbols])
        env, mod, src, nbatch, launch, static = plan
        first = _float_input(inputs)
        tensors = dict(inputs)
        if src.form.hoisted:
            tensors.update(_hoisted(src.form.cascade, src.form, env, inputs))
        (_, shape), = _output_shapes(c, env)
        out = torch.empty(shape, dtype=first.dtype, device=first.device)
        args = []
        for name in src.tensors:
            args += _tensor_args(tensors[name])
        args += _tensor_args(out) + static
        err = dict(gather_err=torch.zeros(1, dtype=torch.int32, device=first.device)) if src.gathers else {}
        with np.errstate(all="ignore"):
            mod.attnc_chunked[(nbatch,)](*args, **err, **src.blocks, **launch)
        if err and int(err["gather_err"].item()):
            site = src.gathers[int(err["gather_err"].item()) - 1]
            _locate_gather(c, self.shapes, inputs, GatherRangeError(
                f"index out of range: the chunked kernel read {site} at a gathered index outside the tensor, at a "
                "point in range of its ranks; a gather is never clipped", site.loc, c.source))
        return out


def _check_tma(name: str, t) -> None:
    """A tensor loaded through a TMA descriptor must be laid out as TMA
    requires (contiguous last dimension, 16-byte aligned base and strides);
    anything else is refused here, never loaded wrongly."""
    size = t.element_size()
    bad = [f"its last stride is {t.stride(-1)}, not 1"] if t.stride(-1) != 1 else []
    bad += [f"stride {s} of dimension {d} is {s * size} bytes, not a multiple of 16"
            for d, s in enumerate(t.stride()[:-1]) if (s * size) % 16]
    bad += ["its data is not 16-byte aligned"] if t.data_ptr() % 16 else []
    if bad:
        raise ShapeError(f"input {name} is loaded through a TMA descriptor (mapping tma: true) but {bad[0]}; "
                         "pass it contiguous with the last dimension a multiple of 16 bytes, or compile with "
                         "tma: false")


def _tma_allocator(device) -> None:
    """Descriptors made in the kernel need global scratch memory (Triton's
    allocator); set once per process for a GPU launch."""
    import torch
    import triton

    def alloc(size: int, alignment: int, stream):
        return torch.empty(size, device=device, dtype=torch.int8)
    triton.set_allocator(alloc)


def _output_shapes(c: Cascade, env: dict):
    return [(t, tuple(int(env[r]) for r in t.ranks)) for t in c.outputs]


def _float_input(inputs: dict):
    """The input whose type and device the outputs take: the first
    floating-point one (a bool mask or an integer table given first must not
    make the outputs bool)."""
    import torch
    floats = [t for t in inputs.values() if torch.is_floating_point(t)]
    if not floats:
        raise ShapeError("no floating-point input: the outputs take the type of the first one")
    return floats[0]


def _tensor_args(t) -> list:
    return [t] + [int(s) for s in t.stride()] + [int(n) for n in t.shape]


def _hoisted(c: Cascade, f: FusedForm, env: dict, inputs: dict) -> dict:
    """Einsums with no key rank, computed before the kernel: a product of
    accesses at plain indices by torch.einsum on the inputs' device, anything
    else by the reference executor's evaluator on the host (exact, slow)."""
    import torch
    device = next(iter(inputs.values())).device
    out, ev, arrays = {}, None, None
    for e in f.hoisted:
        fast = _as_einsum(e)
        if fast is not None and all(a.tensor in inputs or a.tensor in out for a in e.reads()):
            spec, names = fast
            ops = [(inputs[n] if n in inputs else out[n]).float() for n in names]
            out[e.name] = torch.einsum(spec, *ops).contiguous()
            continue
        if ev is None:
            from einsum_ir.execute import _Evaluator
            arrays = {k: v.detach().cpu().numpy() for k, v in inputs.items()}
            arrays = {k: v if v.dtype == bool else v.astype(np.float64) for k, v in arrays.items()}
            for h in f.hoisted:     # only what the hoisted Einsums write, never the tiles
                arrays[h.name] = np.zeros(tuple(int(env[r]) for r in c.tensor(h.name).ranks))
            ev = _Evaluator(c, env, arrays, np.dtype("float64"))
            for x in _inline_reads(c, f):          # element-wise Einsums a hoisted one reads (chunked form)
                arrays[x.name] = np.zeros(tuple(int(env[r]) for r in c.tensor(x.name).ranks))
                ev.run(x, {})
        for done, t in out.items():
            arrays[done] = t.detach().double().cpu().numpy()
        ev.run(e, {})
        out[e.name] = torch.tensor(arrays[e.name], dtype=torch.float32, device=device)
    return out


def _inline_reads(c: Cascade, f) -> list:
    """The substituted (element-wise) Einsums the hoisted ones read, in cascade order."""
    inline = getattr(f, "inline", {})
    need, stack = set(), [a.tensor for h in f.hoisted for a in h.reads()]
    while stack:
        t = stack.pop()
        if t in inline and t not in need:
            need.add(t)
            stack += [a.tensor for a in inline[t].reads()]
    return [e for e in c.einsums if e.name in need]


def _as_einsum(e):
    """`X[b, d, p] * W[h, f, d]` summed (or a plain product): a torch.einsum spec."""
    from einsum_ir.ir import Access
    factors, stack = [], [e.expr]
    while stack:
        x = stack.pop()
        if isinstance(x, Op) and x.name == "mul":
            stack.extend(reversed(x.args))
        else:
            factors.append(x)
    if e.scan is not None:    # a running sum or product: the evaluator's (torch.einsum has no scan)
        return None
    if e.reduce != "sum" or e.predicate is not None or not all(
            isinstance(x, Access) and all(isinstance(i, Idx) for i in x.indices) for x in factors + [e.output]):
        return None
    inside = {i.name for x in factors for i in x.indices}
    if any(i.name not in inside for i in e.output.indices):
        return None           # an output index no factor carries (a broadcast): the evaluator's job
    letters = {}
    for x in factors + [e.output]:
        for i in x.indices:
            letters.setdefault(i.name, chr(ord("a") + len(letters)))
    spec = ",".join("".join(letters[i.name] for i in x.indices) for x in factors)
    return spec + "->" + "".join(letters[i.name] for i in e.output.indices), [x.tensor for x in factors]


__all__ = ["CacheError", "ChunkedKernel", "FusedKernel", "cache_dir", "cache_key", "compile_kernel"]
