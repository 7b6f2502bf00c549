"""absl flag definitions shared by the programs, grouped by component.

Every flag maps to one field of ``official.config.RunConfig`` (see ``FLAG_TO_FIELD``);
flags default to ``None`` ("not given"), so a recipe flag file or the command line
overrides the dataclass default only for the flags actually given. Program-only flags
(not stored in the run config) are listed in ``RUNTIME_ONLY``.

    from flags import define_all, build_run_config
    define_all()
    ...
    config = build_run_config(absl.flags.FLAGS)
"""
from __future__ import annotations

import ast
import json
from typing import Any, Dict

from flags import (data as _data, distribution as _distribution, model as _model,
                   optimization as _optimization, regularization as _regularization,
                   runtime as _runtime)

_GROUPS = (_model, _data, _optimization, _regularization, _distribution, _runtime)

FLAG_TO_FIELD: Dict[str, str] = {}
for _g in _GROUPS:
    FLAG_TO_FIELD.update(_g.FIELDS)

RUNTIME_ONLY = tuple(_runtime.RUNTIME_ONLY)

_defined_groups: set = set()


def define_groups(*groups) -> None:
    """Defines the flags of the given group modules (e.g. ``flags.model``), each group once,
    so programs that need only some groups (``official.summary``: the model group) and the
    trainer can share one process (tests) without duplicate-flag errors."""
    for g in groups:
        if g.__name__ not in _defined_groups:
            g.define()
            _defined_groups.add(g.__name__)


def define_all() -> None:
    """Defines every flag once (idempotent)."""
    define_groups(*_GROUPS)


HELP_ARGS = ("--help", "-h", "--helpshort", "-?")


def exit_with_help_if_asked(argv, doc: str, flag_values=None) -> None:
    """``--help``/``-h``: prints ``doc`` and EVERY defined flag, grouped by flag module, then
    exits 0. (absl's own ``--help`` lists only the main module's key flags, which for these
    programs -- flags defined in ``flags/`` and run as console scripts -- is none of them.)"""
    import sys
    from absl import flags as absl_flags
    if not any(a in HELP_ARGS for a in list(argv)[1:]):
        return
    fv = flag_values if flag_values is not None else absl_flags.FLAGS
    ours = [m for m in sorted(fv.flags_by_module_dict()) if not m.startswith("absl.")]
    sys.stdout.write((doc or "").strip() + "\n\nFlags (also accepted in --flagfile files; "
                     "--helpfull adds absl's own):\n\n"
                     + "\n\n".join(fv.module_help(m) for m in ours) + "\n")
    sys.exit(0)


def _convert(flag_name: str, value: Any) -> Any:
    if flag_name == "model_overrides":
        return parse_overrides(value)
    if flag_name in ("piecewise_boundaries", "piecewise_rates", "drop_block_keep_prob"):
        return [float(v) for v in value]
    if flag_name == "eval_split" and value in ("", "auto"):
        return None
    return value


def parse_overrides(text) -> Dict[str, Any]:
    """``--model_overrides`` as JSON (``{"width": 0.25}``) or ``k=v,k=v`` (values JSON-decoded)."""
    if text is None or text == "":
        return {}
    if isinstance(text, dict):
        return text
    text = text.strip()
    if text.startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"--model_overrides is not valid JSON: {e}") from e
    out = {}
    for part in text.split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise ValueError(f"--model_overrides entry {part!r} is not key=value")
        k, v = part.split("=", 1)
        out[k.strip()] = _decode_value(v.strip())
    return out


def _decode_value(text: str) -> Any:
    """A ``k=v`` value: JSON (``true``, ``[1, 2]``), else a Python literal (``True``), else the
    string itself (``sconv``)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def build_run_config(flag_values, base=None):
    """RunConfig from defaults (or ``base``) overridden by every flag that was given."""
    from official.config import RunConfig
    config = base if base is not None else RunConfig()
    d = config.to_dict()
    for flag_name, field in FLAG_TO_FIELD.items():
        value = flag_values[flag_name].value
        if value is None:
            continue
        value = _convert(flag_name, value)
        if field == "model.overrides":
            merged = dict(d["model"]["overrides"])
            merged.update(value)
            value = merged
        section, _, name = field.partition(".")
        if section == "recipe":
            d["recipe"] = value
        else:
            d[section][name] = value
    return RunConfig.from_dict(d)
