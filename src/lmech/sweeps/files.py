"""Sweep files: a sweep written down in TOML, the same as its command line.

::

    experiment = "deep-linear"
    quick = true
    seeds = 3                       # seed axis: base seed + 0, 1, 2
    seed = 0                        # the base seed (--seed)
    executor = "local"              # or "ray"
    workers = 2
    # ray_address = "auto"
    # plot = "x=init_scale,y=t_half_err,hue=depth"

    [set]                           # --set: fields of the base config
    stage_init_scales = []
    steps = 400

    [grid]                          # --grid: a list, or a "lin:a:b:n" / "log:a:b:n" string
    init_scale = [1e-2, 1e-3]
    depth = "lin:2:3:2"

    [random]                        # --random N with --range: random search
    n = 4
    seed = 0                        # the draw's seed (--sweep-seed)
    [random.ranges]
    lr = "log:1e-3:1e-2"

Every value is turned into the text of its command-line flag, so a file and a command line that
say the same thing are the same sweep (same sweep id, same run ids).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmech.errors import BadInput

KEYS = {"experiment", "quick", "seed", "device", "seeds", "set", "grid", "random", "executor", "workers",
        "ray_address", "plot", "figures"}


def _text(value: Any, where: str) -> str:
    """A TOML value as command-line text: lists become ``a,b`` (lists of lists ``a,b;c,d``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, list):
        if any(isinstance(v, list) for v in value):
            return ";".join(_text(v, where) for v in value)
        return ",".join(_text(v, where) for v in value)
    raise BadInput(where, value, "a number, string, boolean or list")


def load(path: str | Path) -> dict[str, Any]:
    """Read a TOML sweep file into the options of ``lmech sweep`` (``experiment``, ``grid`` as
    ``key=SPEC`` texts, ...). BadInput names the file and the bad entry."""
    path = Path(path)
    if not path.is_file():
        raise BadInput("--file", str(path), "an existing TOML sweep file")
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise BadInput("--file", str(path), "Python >= 3.11 (tomllib) or the tomli package") from None
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BadInput("--file", str(path), f"a UTF-8 text file (byte {exc.start} is not UTF-8)") from None
    except OSError as exc:
        raise BadInput("--file", str(path), f"a readable file ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise BadInput("--file", str(path), f"valid TOML ({exc})") from None
    unknown = sorted(set(data) - KEYS)
    if unknown:
        raise BadInput(f"{path.name}: key", unknown[0], f"one of {', '.join(sorted(KEYS))}")
    out: dict[str, Any] = {}
    for key in ("experiment", "device", "executor", "ray_address", "plot"):
        if key in data:
            if not isinstance(data[key], str):
                raise BadInput(f"{path.name}: {key}", data[key], "a string")
            out[key] = data[key]
    for key in ("quick", "figures"):
        if key in data:
            if not isinstance(data[key], bool):
                raise BadInput(f"{path.name}: {key}", data[key], "true or false")
            out[key] = data[key]
    for key in ("seed", "seeds", "workers"):
        if key in data:
            if isinstance(data[key], bool) or not isinstance(data[key], int):
                raise BadInput(f"{path.name}: {key}", data[key], "an integer")
            out[key] = data[key]
    for key in ("set", "grid"):
        table = data.get(key, {})
        if not isinstance(table, dict):
            raise BadInput(f"{path.name}: {key}", table, f"a table [{key}] of field = value")
        out[key] = [f"{k}={_text(v, f'{path.name}: {key}.{k}')}" for k, v in table.items()]
    random = data.get("random", {})
    if not isinstance(random, dict):
        raise BadInput(f"{path.name}: random", random, "a table [random] with n, seed and [random.ranges]")
    extra = sorted(set(random) - {"n", "seed", "ranges"})
    if extra:
        raise BadInput(f"{path.name}: random key", extra[0], "one of n, seed, ranges")
    for key, name in (("n", "random"), ("seed", "sweep_seed")):
        if key in random:
            if isinstance(random[key], bool) or not isinstance(random[key], int):
                raise BadInput(f"{path.name}: random.{key}", random[key], "an integer")
            out[name] = random[key]
    ranges = random.get("ranges", {})
    if not isinstance(ranges, dict):
        raise BadInput(f"{path.name}: random.ranges", ranges, "a table of field = \"lin:a:b\" | \"log:a:b\" | list")
    out["ranges"] = [f"{k}={_text(v, f'{path.name}: random.ranges.{k}')}" for k, v in ranges.items()]
    return out


__all__ = ["load"]
