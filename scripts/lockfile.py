"""The lock file against pyproject.toml and the installed environment.

    python scripts/lockfile.py check        exit 1, naming each disagreement, when the lock and
                                            pyproject.toml disagree
    python scripts/lockfile.py extraneous   print the installed distributions the lock does not pin

The lock (``requirements/lock.txt``, written by ``uv pip compile`` from ``scripts/upgrade-deps``)
agrees with ``pyproject.toml`` when every requirement there (the dependencies and every extra) is
pinned at a version inside its range, and every package that the lock pins only because
crowdseg asked for it is still asked for. Offline: it reads files, it resolves nothing. Runs in
the project's virtual environment (it needs ``packaging``).
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "lock.txt"
PYPROJECT = ROOT / "pyproject.toml"
SELF = "crowdseg"
FIX = "run scripts/upgrade-deps (re-locks and runs the tests), or undo the change to pyproject.toml"

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
_VIA = re.compile(r"^\s+#\s+(?:via\s+)?(\S.*)$")


def lock_pins(text: str) -> dict[str, tuple[Version, set[str]]]:
    """Each pinned package's canonical name -> (version, the names of what required it)."""
    pins: dict[str, tuple[Version, set[str]]] = {}
    current: str | None = None
    for line in text.splitlines():
        pin = _PIN.match(line)
        if pin:
            current = canonicalize_name(pin.group(1))
            pins[current] = (Version(pin.group(2)), set())
            continue
        via = _VIA.match(line)
        if current and via and line.strip() != "# via":
            pins[current][1].add(canonicalize_name(via.group(1).split()[0]))
    return pins


def project_requirements(pyproject: dict) -> list[Requirement]:
    project = pyproject["project"]
    listed = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        listed.extend(extra)
    return [Requirement(r) for r in listed]


def disagreements(pyproject: dict, lock_text: str) -> list[str]:
    pins = lock_pins(lock_text)
    wanted = project_requirements(pyproject)
    problems = []
    for req in wanted:
        name = canonicalize_name(req.name)
        if name not in pins:
            problems.append(f"{req} is in pyproject.toml but not in the lock")
        elif not req.specifier.contains(pins[name][0], prereleases=True):
            problems.append(f"{req} is in pyproject.toml but the lock pins {name}=={pins[name][0]}")
    asked = {canonicalize_name(r.name) for r in wanted}
    for name, (version, via) in sorted(pins.items()):
        if via == {SELF} and name not in asked:
            problems.append(f"the lock pins {name}=={version} for crowdseg, which no longer asks for it")
    return problems


def extraneous(lock_text: str) -> list[str]:
    pinned = set(lock_pins(lock_text)) | {SELF}
    installed = {canonicalize_name(d.metadata["Name"]) for d in metadata.distributions() if d.metadata["Name"]}
    return sorted(installed - pinned)


def main(argv: list[str]) -> int:
    if argv != ["check"] and argv != ["extraneous"]:
        print(__doc__, file=sys.stderr)
        return 2
    lock_text = LOCK.read_text()
    if argv == ["extraneous"]:
        print("\n".join(extraneous(lock_text)))
        return 0
    problems = disagreements(tomllib.loads(PYPROJECT.read_text()), lock_text)
    for problem in problems:
        print(f"lock: {problem}", file=sys.stderr)
    if problems:
        print(f"lock: requirements/lock.txt disagrees with pyproject.toml; {FIX}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
