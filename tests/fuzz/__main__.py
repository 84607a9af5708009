"""`python -m tests.fuzz [--seconds N] [--plain] [TARGET ...]`: every target (or the
ones named) for N seconds each, with atheris when it is installed (`make fuzz` installs
it), else with the plain mutation loop. Exit 1 on a finding."""

from __future__ import annotations

import argparse
import subprocess
import sys

from .runner import run_atheris, run_plain_for
from .targets import TARGETS


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz")
    parser.add_argument("targets", nargs="*", choices=[[], *TARGETS], default=[])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--plain", action="store_true", help="no atheris")
    parser.add_argument("--atheris-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.atheris_child:
        run_atheris(args.atheris_child, args.seconds)
        return 0
    try:
        import atheris  # noqa: F401

        guided = not args.plain
    except ImportError:
        guided = False
    failed = []
    for name in args.targets or list(TARGETS):
        if guided:
            command = [sys.executable, "-m", "tests.fuzz", "--seconds", str(args.seconds)]
            result = subprocess.run([*command, "--atheris-child", name], check=False)
            ok = result.returncode == 0
            print(f"{name}: {'ok' if ok else 'FINDING'} (atheris, {args.seconds} s)")
        else:
            try:
                count = run_plain_for(TARGETS[name], args.seconds)
                ok = True
                print(f"{name}: ok ({count} inputs, plain, {args.seconds} s)")
            except AssertionError as exc:
                ok = False
                print(exc)
        if not ok:
            failed.append(name)
    if failed:
        print("findings in:", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
