"""Parsing for the programs whose flags live in their own ``absl.flags.FlagValues``.

``official.evaluate``, ``official.export`` and ``official.convert`` are absl programs whose
flags (``flags/evaluate.py``, ``flags/export.py``, ``flags/convert.py``; the run-directory
flags they share in ``flags/run_dir.py``) are defined into a *fresh* ``FlagValues`` on every
parse, not into the global ``absl.flags.FLAGS`` that the trainer uses. So

* each program keeps its own flag names, defaults and help (``--model_dir`` of evaluate is
  not the trainer's ``--model_dir``), and any of them can run in one process with the
  trainer or with each other (pytest) without duplicate-flag errors;
* ``main(argv)`` can be called repeatedly from Python with a list of arguments
  (argparse-style: without the program name), each call starting from the defaults;
* ``--flagfile=FILE`` (absl's flag files, one ``--flag=value`` a line) works as for the
  trainer, and ``--help`` lists the program's flags.

    fv = parse(evaluate_flags.define, argv, prog="python -m official.evaluate",
               usage=__doc__, required=("model_dir", "data"), error=EvaluationError)
    fv.model_dir, fv.batch_size, ...
"""
from __future__ import annotations

import sys
from typing import Callable, Iterable, List, Mapping, Optional, Sequence, Type

from absl import flags

HELP_ARGS = ("--help", "-help", "-h", "--helpshort", "-helpshort", "--helpfull",
             "-helpfull", "-?")


class UsageError(ValueError):
    """Bad command-line flags (unknown flag, bad value, missing required flag)."""


def new_flag_values(*define_fns: Callable[[flags.FlagValues], None]) -> flags.FlagValues:
    """A fresh ``FlagValues`` holding the flags the given ``define(flag_values)`` functions
    define."""
    fv = flags.FlagValues()
    for define in define_fns:
        define(fv)
    return fv


def help_text(fv: flags.FlagValues, prog: str, usage: Optional[str] = None) -> str:
    """The ``--help`` text: the program's usage (its module docstring) and every flag."""
    head = (usage or "").strip("\n")
    return (f"{head}\n\n" if head else "") + (
        f"{prog} flags (absl: --flag=value or --flag value;\n"
        f"--flagfile=FILE reads more flags from FILE, one a line):\n"
        + fv.get_help(include_special_flags=True) + "\n")


def _wants_help(args: Sequence[str]) -> bool:
    for arg in args:
        if arg == "--":
            return False
        if arg in HELP_ARGS:
            return True
    return False


def parse(define: Callable[[flags.FlagValues], None], argv: Optional[Iterable[str]] = None,
          *, prog: str, usage: Optional[str] = None, required: Sequence[str] = (),
          error: Type[Exception] = UsageError, alternatives: Optional[Mapping[str, str]] = None,
          positional: bool = False):
    """Defines the program's flags (``define(flag_values)``) into a fresh ``FlagValues``
    and parses ``argv`` (the arguments without the program name; default
    ``sys.argv[1:]``) into it, flag files included.

    ``--help`` (``-h``, ``--helpfull``) prints :func:`help_text` to stdout and raises
    ``SystemExit(0)``. Unknown flags, bad values, positional arguments and missing
    ``required`` flags raise ``error`` (a one-line message naming the flag).
    ``alternatives``: ``{required flag: another flag that can replace it}`` (``{"model_dir":
    "weights"}``): either satisfies the requirement, both at once is an error.
    ``positional=True``: positional arguments are allowed and returned: ``(fv, [args])``.
    """
    args: List[str] = list(sys.argv[1:] if argv is None else argv)
    if any(not isinstance(a, str) for a in args):
        raise TypeError(f"argv must be a list of strings, got {args!r}")
    fv = new_flag_values(define)
    if _wants_help(args):
        sys.stdout.write(help_text(fv, prog, usage))
        sys.stdout.flush()
        raise SystemExit(0)
    try:
        rest = fv([prog] + args)
    except flags.Error as e:
        raise error(f"{e} (see {prog} --help)") from None
    except ValueError as e:  # e.g. --noFLAG=value
        raise error(f"{e} (see {prog} --help)") from None
    if len(rest) > 1 and not positional:
        raise error(f"unexpected arguments {rest[1:]}: {prog} takes only flags "
                    f"(see {prog} --help)")
    alternatives = dict(alternatives or {})
    given = lambda name: fv[name].value not in (None, "")  # noqa: E731
    for name, other in alternatives.items():
        if given(name) and given(other):
            raise error(f"give --{name} or --{other}, not both (see {prog} --help)")
    missing = [f"--{name}" + (f" (or --{alternatives[name]})" if name in alternatives else "")
               for name in required
               if not given(name) and not (name in alternatives and given(alternatives[name]))]
    if missing:
        raise error(f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required "
                    f"(see {prog} --help)")
    return (fv, list(rest[1:])) if positional else fv
