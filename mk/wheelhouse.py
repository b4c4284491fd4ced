"""The wheels the Lambda image's build installs, served to the build from this machine.

Containers built by the project's own daemon (mk/dockerd.sh) reach no registry; this machine's
pip does. So the host downloads every wheel the Dockerfile asks for into a folder, writes a
simple (PEP 503) index beside them, and serves it over HTTP on the daemon's bridge address for
as long as one command runs:

    python mk/wheelhouse.py fetch DIR -r requirements.txt ...
    python mk/wheelhouse.py serve --host 172.29.0.1 --port 38917 DIR -- docker build ... \
        --build-arg PIP_INDEX_URL=http://172.29.0.1:38917/simple/ ...

The wheels are for this interpreter's Python
and platform (the stand-in base image runs the same Python 3.11 on Debian 12).
"""

from __future__ import annotations

import argparse
import functools
import html
import re
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

WHEEL_NAME = re.compile(r"^(?P<name>[A-Za-z0-9_.]+?)-\d")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def fetch(folder: Path, requirements: list[str]) -> None:
    files = folder / "files"
    files.mkdir(parents=True, exist_ok=True)
    # --quiet twice: pip's warnings about this machine's own index settings are not ours.
    args = [sys.executable, "-m", "pip", "download", "-qq", "--dest", str(files)]
    for requirement in requirements:
        args += ["-r", requirement]
    subprocess.run(args, check=True)
    write_index(folder)


def write_index(folder: Path) -> None:
    """One page per project listing its files, as pip's --index-url expects."""
    projects: dict[str, list[str]] = {}
    for path in sorted((folder / "files").iterdir()):
        found = WHEEL_NAME.match(path.name)
        if found:
            projects.setdefault(normalise(found["name"]), []).append(path.name)
    simple = folder / "simple"
    for project, names in projects.items():
        page = simple / project
        page.mkdir(parents=True, exist_ok=True)
        links = "".join(
            f'<a href="../../files/{html.escape(n)}">{html.escape(n)}</a>\n' for n in names
        )
        (page / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")
    root = "".join(f'<a href="{p}/">{p}</a>\n' for p in sorted(projects))
    (simple / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{root}</body></html>\n")


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        pass


def serve(folder: Path, *, host: str, port: int, command: list[str]) -> int:
    handler = functools.partial(QuietHandler, directory=str(folder))
    with ThreadingHTTPServer((host, port), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            return subprocess.run(command).returncode
        finally:
            server.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    get = verbs.add_parser("fetch", help="download the requirements' wheels and index them")
    get.add_argument("folder", type=Path)
    get.add_argument("-r", dest="requirements", action="append", required=True)
    run = verbs.add_parser("serve", help="serve the index while COMMAND runs")
    run.add_argument("folder", type=Path)
    run.add_argument("--host", required=True, help="the docker bridge address, never 0.0.0.0")
    run.add_argument("--port", type=int, required=True, help="fixed, to keep Docker's cache")
    run.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.verb == "fetch":
        fetch(args.folder, args.requirements)
        return 0
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("serve needs a command after --")
    return serve(args.folder, host=args.host, port=args.port, command=command)


if __name__ == "__main__":
    raise SystemExit(main())
