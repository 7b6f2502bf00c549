"""The trainer's absl flags, generated from the run-config schema (``official.config``).

Every field of :class:`official.config.RunConfig` declared with ``setting(...)`` is one flag:
its name (the field name, or the ``flag=`` it declares), type (``bool``, ``int``, ``float``,
``str``, an enum when the field has ``choices``, a comma list for ``List[float]``, a JSON /
``k=v,k=v`` string for ``model_overrides``) and help (the field's, plus its default) come from
the field; nothing is listed twice. Flags default to ``None`` ("not given"), so a recipe flag
file or the command line overrides the dataclass default only for the flags actually given.
``--set section.field=value`` (repeatable, applied after the other flags, like Model Garden's
``--params_override``) reaches every field, including those without a flag of their own and
single builder overrides (``--set model.overrides.width=0.5``). Program-only flags (not stored in
the run config) are listed in ``RUNTIME_ONLY``; ``--weights`` is a synonym of
``--init_checkpoint``.

    from flags import define_all, build_run_config
    define_all()
    ...
    config = build_run_config(absl.flags.FLAGS)
"""
from __future__ import annotations

import dataclasses
import json
import sys
import typing
from typing import Any, Dict

from absl import flags as absl_flags

from flags import runtime as _runtime
from official import config as _config

FLAG_TO_FIELD: Dict[str, str] = {flag: dotted for flag, dotted, _, _ in _config.iter_settings()}
FLAG_TO_FIELD["weights"] = "runtime.init_checkpoint"  # synonym (official.train checks they agree)
_HINTS = {dotted: hint for _, dotted, _, hint in _config.iter_settings()}

RUNTIME_ONLY = tuple(_runtime.RUNTIME_ONLY)
# The config's sections in schema order ("recipe" for the top-level field with a flag).
SECTIONS = tuple(dict.fromkeys(dotted.partition(".")[0] for _, dotted, _, _ in _config.iter_settings()))

WEIGHTS_HELP = ("Synonym of --init_checkpoint: warm start (fine-tuning), all but the head, from a "
                "run or checkpoint dir, .weights.h5, .keras, a timm state dict or a timm name.")
SET_HELP = ("Dotted override of any run-config field, applied after the other flags: "
            "--set optimization.ema_decay=0.9999, --set model.overrides.width=0.5 (one builder "
            "override), --set data.eval_split=none. Repeatable. Fields: see run_config.json.")

_defined: set = set()


def _default_text(default) -> str:
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, (list, tuple)):
        return ",".join(str(v) for v in default)
    return f"{default:g}" if isinstance(default, float) else str(default)


def flag_help(f) -> str:
    """The field's help plus its default (unless unset / empty, which the help explains)."""
    text = f.metadata.get("help", "")
    default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
    if default not in (None, "", [], {}):
        text = f"{text} Default: {_default_text(default)}."
    return text


def _define_setting(flag: str, f, hint, fv) -> None:
    args = typing.get_args(hint)
    if typing.get_origin(hint) is typing.Union and type(None) in args:
        hint = next(a for a in args if a is not type(None))
    helptext, choices = flag_help(f), f.metadata.get("choices")
    origin = typing.get_origin(hint)
    if choices:
        absl_flags.DEFINE_enum(flag, None, list(choices), helptext, flag_values=fv)
    elif hint is bool:
        absl_flags.DEFINE_boolean(flag, None, helptext, flag_values=fv)
    elif hint is int:
        absl_flags.DEFINE_integer(flag, None, helptext, flag_values=fv)
    elif hint is float:
        absl_flags.DEFINE_float(flag, None, helptext, flag_values=fv)
    elif origin in (list, typing.List):
        absl_flags.DEFINE_list(flag, None, helptext, flag_values=fv)
    elif hint is str or origin in (dict, typing.Dict):
        absl_flags.DEFINE_string(flag, None, helptext, flag_values=fv)
    else:
        raise TypeError(f"official.config field for --{flag}: no flag type for {hint}")


def define_sections(*sections: str, flag_values=None) -> None:
    """Defines the flags of the given run-config sections (``"model"``, ``"data"``, ...,
    ``"recipe"`` for the top-level field), each section once, so programs that need only some
    (``official.summary``: ``"model"``) and the trainer can share one process (tests) without
    duplicate-flag errors."""
    fv = flag_values if flag_values is not None else absl_flags.FLAGS
    for section in sections:
        if section not in SECTIONS:
            raise ValueError(f"unknown run-config section {section!r}; use one of {SECTIONS}")
        key = (id(fv), section)
        if key in _defined:
            continue
        for flag, dotted, f, hint in _config.iter_settings():
            if dotted.partition(".")[0] == section:
                _define_setting(flag, f, hint, fv)
        if section == "runtime":
            absl_flags.DEFINE_string("weights", None, WEIGHTS_HELP, flag_values=fv)
            absl_flags.DEFINE_multi_string("set", None, SET_HELP, flag_values=fv)
            _runtime.define(fv)
        _defined.add(key)


def define_all(flag_values=None) -> None:
    """Defines every flag once (idempotent)."""
    define_sections(*SECTIONS, flag_values=flag_values)


HELP_ARGS = ("--help", "-h", "--helpshort", "-?")


def exit_with_help_if_asked(argv, doc: str, flag_values=None) -> None:
    """``--help``/``-h``: prints ``doc`` and EVERY defined flag, grouped by flag module, then
    exits 0. (absl's own ``--help`` lists only the main module's key flags, which for these
    programs -- flags defined in ``flags/`` and run as console scripts -- is none of them.)"""
    if not any(a in HELP_ARGS for a in list(argv)[1:]):
        return
    fv = flag_values if flag_values is not None else absl_flags.FLAGS
    ours = [m for m in sorted(fv.flags_by_module_dict()) if not m.startswith("absl.")]
    sys.stdout.write((doc or "").strip() + "\n\nFlags (also accepted in --flagfile files; "
                     "--helpfull adds absl's own):\n\n"
                     + "\n\n".join(fv.module_help(m) for m in ours) + "\n")
    sys.exit(0)


def _convert(flag_name: str, value: Any) -> Any:
    """A parsed flag value as its field's type: ``--model_overrides`` text as a dict, a comma
    list as ``List[float]`` items (absl gives strings), ``--eval_split=`` / ``auto`` as unset."""
    if flag_name == "model_overrides":
        return parse_overrides(value)
    if flag_name == "eval_split" and value in ("", "auto"):
        return None
    hint = _HINTS[FLAG_TO_FIELD[flag_name]]
    if typing.get_origin(hint) in (list, typing.List):
        item = (typing.get_args(hint) or (str,))[0]
        return [item(v) for v in value]
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
        out[k.strip()] = _config.decode_literal(v.strip())
    return out


def parse_sets(entries) -> Dict[str, str]:
    """``--set`` entries (``"optimization.ema_decay=0.9999"``) as ``{dotted: text}``."""
    out = {}
    for entry in entries or ():
        key, eq, value = entry.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"--set {entry!r}: expected section.field=value, e.g. "
                             f"--set optimization.ema_decay=0.9999")
        out[key.strip()] = value.strip()
    return out


def build_run_config(flag_values, base=None):
    """RunConfig from defaults (or ``base``) overridden by every flag that was given, then by
    ``--set`` (when defined). ``ValueError`` names a bad ``--set``."""
    config = base if base is not None else _config.RunConfig()
    d = config.to_dict()
    for flag_name, field in FLAG_TO_FIELD.items():
        if flag_name not in flag_values:
            continue
        value = flag_values[flag_name].value
        if value is None:
            continue
        value = _convert(flag_name, value)
        if field == "model.overrides":
            merged = dict(d["model"]["overrides"])
            merged.update(value)
            value = merged
        section, _, name = field.partition(".")
        if not name:
            d[section] = value
        else:
            d[section][name] = value
    config = _config.RunConfig.from_dict(d)
    if "set" in flag_values and flag_values["set"].value:
        try:
            config = config.override(parse_sets(flag_values["set"].value))
        except ValueError as e:
            raise ValueError(f"--set: {e}") from None
    return config
