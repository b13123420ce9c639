"""How jaxssl's command lines end on a user error: one line, exit code 1, no traceback.

:func:`run` wraps ``absl.app.run``. These end with ``error: <one line>`` on stderr and exit 1:

* a missing optional package (:class:`jaxssl.optional.MissingDependencyError`; the line ends
  with the install command);
* a bad config or flag: a ``ValueError`` raised by jaxssl's own code or a config file (the
  message names the field, the value and the fix; see ``jaxssl.config.fail``), a misspelt
  ``--config.KEY`` (configs are locked) or a ``--config`` file that does not exist or fails
  to load;
* ``extra`` exception types given by the caller (e.g. a dataset that is not prepared).

A ``ValueError`` raised inside a library (JAX, NumPy, ...) is not a config error and keeps its
traceback. Ctrl-C outside the training loop ends with one line and exit code 130. For the
traceback of any of these, pass ``--debug_traceback`` or set ``JAXSSL_TRACEBACK=1``.
"""
from __future__ import annotations

import os
import re
import sys
import traceback

from absl import app, flags

from jaxssl.optional import MissingDependencyError

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT: what a shell reports for Ctrl-C
TRACEBACK_ENV = "JAXSSL_TRACEBACK"

_DEBUG = flags.DEFINE_bool("debug_traceback", False,
                           f"Show the Python traceback of a config / flag / missing-package error "
                           f"(also: {TRACEBACK_ENV}=1).")

_OWN_DIRS = tuple(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), d) + os.sep
                  for d in ("jaxssl", "configs", "scripts"))


def want_traceback(argv: list[str] | None = None) -> bool:
    """``--debug_traceback`` on the command line (parsed or not yet) or ``JAXSSL_TRACEBACK=1``."""
    if os.environ.get(TRACEBACK_ENV, "").strip().lower() in ("1", "true", "yes"):
        return True
    if flags.FLAGS.is_parsed():
        return bool(_DEBUG.value)
    argv = sys.argv if argv is None else argv
    return any(a in ("--debug_traceback", "--debug_traceback=true", "--debug_traceback=1")
               for a in argv[1:])


def raised_by_jaxssl(err: BaseException) -> bool:
    """Was ``err`` raised by jaxssl's own code (jaxssl/, configs/, scripts/), not a library?"""
    frames = traceback.extract_tb(err.__traceback__)
    return bool(frames) and os.path.abspath(frames[-1].filename).startswith(_OWN_DIRS)


def _config_override_args(argv: list[str]) -> list[str]:
    return [a for a in argv[1:] if a.startswith("--config.")]


def _unknown_key_message(err: BaseException, argv: list[str]) -> str | None:
    """One line for a misspelt ``--config.KEY`` (ml_collections raises KeyError/AttributeError):
    the flag, the missing field or section, and a close name or the names there are."""
    text = str(err).encode().decode("unicode_escape", errors="ignore")
    m = re.search(r"'([^'\\]+)'", text)
    if m is None:
        return None
    key = m.group(1)
    for flag in _config_override_args(argv):
        found = re.match(rf"--config\.((?:\w+\.)*){re.escape(key)}(\.|=|$)", flag)
        if found:
            break
    else:
        return None
    parent, is_section = found.group(1).rstrip("."), found.group(2) == "."
    what = "section" if is_section else "field"
    where = f"section {parent!r} has" if parent else "config has"
    hint = re.search(r'Did you mean "([^"]+)"', text)
    if hint:
        fix = f"did you mean {hint.group(1)!r}?"
    else:
        names = _preset_names(argv, parent, sections=is_section)
        fix = (f"use one of {names}" if names else "use a field the preset has") + \
            " (configs are locked: a misspelt key is an error)"
    return f"flag {flag}: the {where} no {what} {key!r}; {fix}"


def _preset_names(argv: list[str], parent: str, sections: bool) -> list[str] | None:
    """The section names (or the field names of section ``parent``) of the ``--config`` preset,
    or None when it cannot be loaded."""
    spec = next((a[len("--config="):] for a in argv[1:] if a.startswith("--config=")), None)
    if spec is None:
        return None
    path, _, arg = spec.partition(":")
    try:
        import importlib.util
        module_spec = importlib.util.spec_from_file_location("jaxssl_cli_preset", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        node = module.get_config(arg or None)
        for part in filter(None, parent.split(".")):
            node = node[part]
    except Exception:  # noqa: BLE001 - only a better hint is lost
        return None
    return sorted(k for k, v in node.items() if hasattr(v, "items") == sections)


def _config_file_message(argv: list[str]) -> str | None:
    """One line for a ``--config=PATH[:ARG]`` whose file does not exist."""
    for a in argv[1:]:
        if a.startswith("--config="):
            path = a[len("--config="):].split(":", 1)[0]
            if not os.path.isfile(path):
                return (f"flag --config={path}: no such config file (from {os.getcwd()}); use a "
                        f"file in configs/, e.g. --config=configs/simclr_digits.py")
    return None


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def flag_error_line(err: Exception) -> str:
    """One line for an absl flag-parsing error; a config file's traceback inside the message
    (ml_collections includes it) is reduced to its last line, the exception itself."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    if any(ln.startswith("Traceback") for ln in lines):
        head = lines[0].replace(" Error whilst parsing config file:", "").rstrip(":")
        return f"{head}: {lines[-1]}"
    return one_line(err)


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with a parsing error reported in one line (exit 1)."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as err:
        if want_traceback(argv):
            raise
        _fail(f"bad command line: {flag_error_line(err)}; see --helpshort")


def user_error_line(err: BaseException) -> str | None:
    """The one line to print for ``err`` if it is a user error (a missing optional package, or
    a ``ValueError`` raised by jaxssl's own code); None otherwise (or when a traceback is
    wanted). For command lines that do not use :func:`run` (argparse scripts)."""
    if want_traceback():
        return None
    if isinstance(err, MissingDependencyError) or (isinstance(err, ValueError) and raised_by_jaxssl(err)):
        return f"error: {one_line(err)}"
    return None


def run(main, *, extra: tuple[type[BaseException], ...] = ()) -> None:
    """``absl.app.run(main)`` with the error reporting of this module (does not return)."""
    argv = list(sys.argv)
    if not want_traceback(argv):
        msg = _config_file_message(argv)
        if msg:
            _fail(msg)
    started = []

    def _main(args):
        started.append(True)
        return main(args)

    try:
        app.run(_main, flags_parser=_parse_flags)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        if want_traceback(argv):
            raise
        print("interrupted (Ctrl-C); files already written, such as finished checkpoints, are "
              "intact (a training run resumes when the same command is run again)",
              file=sys.stderr, flush=True)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as err:  # noqa: BLE001 - re-raised below unless it is a user error
        if want_traceback(argv):
            raise
        msg = None
        if isinstance(err, MissingDependencyError):
            _fail(one_line(err), hint=False)
        elif extra and isinstance(err, extra):
            msg = str(err)  # may be several lines (e.g. how to prepare a dataset)
            print(f"error: {msg}", file=sys.stderr, flush=True)
            sys.exit(EXIT_ERROR)
        elif not started:  # flag parsing / config loading
            msg = (_unknown_key_message(err, argv) if isinstance(err, (KeyError, AttributeError))
                   else None) or _config_file_message(argv) or (
                f"bad command line ({type(err).__name__}: {one_line(err)})")
        elif isinstance(err, ValueError) and raised_by_jaxssl(err):
            msg = str(err)
        elif isinstance(err, OSError) and "Failed loading config file" in str(err):
            msg = f"cannot load the --config file: {one_line(err)}"
        if msg is None:
            raise
        _fail(one_line(msg))


def _fail(msg: str, hint: bool = True) -> None:
    tail = f" (for the traceback: --debug_traceback or {TRACEBACK_ENV}=1)" if hint else ""
    print(f"error: {msg}{tail}", file=sys.stderr, flush=True)
    sys.exit(EXIT_ERROR)
