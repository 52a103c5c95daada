"""Random points for a unit and their expected results from its Python model."""
from __future__ import annotations

import random


def operand(rng: random.Random, fmt) -> int:
    """A mix of edge cases, the full range and the small values attention sees."""
    r = rng.random()
    if r < 0.1:
        return rng.choice([0, fmt.min, fmt.max, fmt.one, -fmt.one, 1, -1, fmt.min + 1, fmt.max - 1])
    if r < 0.4:
        return rng.randint(fmt.min, fmt.max)
    return rng.randint(-16 * fmt.one, 16 * fmt.one)


def unit_spec(unit, n: int, seed: int) -> dict:
    """The vector file of `n` points: ports, values, `first` flags (a reduction
    restarts at random), the model's (y, exists) for each."""
    rng = random.Random(seed)
    f = unit.fmt
    ports = [{"name": p, "bits": 1 if t == "bool" else f.width} for p, _, t in unit.operands]
    ports += [{"name": p, "bits": 32} for p, _ in unit.coords + unit.syms]
    points, expect, acc = [], [], None
    for i in range(n):
        ins = [rng.randint(0, 1) if t == "bool" else operand(rng, f) for _, _, t in unit.operands]
        coords = {v: rng.randint(0, 300) for _, v in unit.coords}
        syms = {s: rng.randint(1, 300) for _, s in unit.syms}
        first = 1 if (unit.reduce is None or acc is None or rng.random() < 0.1) else 0
        y, ex = unit.model(ins, coords, syms, None if first else acc)
        acc = y
        points.append([ins + [coords[v] for _, v in unit.coords] + [syms[s] for _, s in unit.syms], first])
        expect.append([y, int(ex)])
    return {"ports": ports, "width": f.width, "points": points, "expect": expect}
