"""The Lambda image's functions as Lambda runs them: a container per function, invoked through the
Runtime Interface Emulator (the image's /lambda-entrypoint.sh starts it when no Runtime API is
there), on the project's own Docker daemon (mk/dockerd.sh)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.template import source

ROOT = Path(__file__).resolve().parents[2]
DOCKERD = ROOT / "mk/dockerd.sh"
INVOKE_PATH = "/2015-03-31/functions/function/invocations"


def command(function: str) -> str:
    """The handler template.yaml's ImageConfig.Command names for ``function``."""
    (handler,) = source()["Resources"][function]["Properties"]["ImageConfig"]["Command"]
    return str(handler)


def daemon_env() -> dict[str, str]:
    """DOCKER_HOST for the project's daemon (what `mk/dockerd.sh env` prints)."""
    line = subprocess.run([DOCKERD, "env"], capture_output=True, text=True, check=True).stdout
    name, _, value = line.strip().removeprefix("export ").partition("=")
    return {name: value, "DOCKER_BUILDKIT": "0"}


def bridge_address() -> str:
    return subprocess.run(
        [DOCKERD, "address"], capture_output=True, text=True, check=True
    ).stdout.strip()


def docker(*args: str, env: dict[str, str], check: bool = True) -> str:
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, env={**os.environ, **env}, timeout=600
    )
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


@dataclass
class Function:
    """One running function: ``invoke`` sends an event, as Lambda's Invoke API would."""

    container: str
    url: str
    docker_env: dict[str, str]

    def invoke(self, event: dict[str, Any], *, timeout: float = 120) -> Any:
        answer = httpx.post(self.url, content=json.dumps(event), timeout=timeout)
        answer.raise_for_status()
        return answer.json()

    def logs(self) -> str:
        return docker("logs", self.container, env=self.docker_env, check=False)


@contextmanager
def running(
    image: str, handler: str, *, environment: dict[str, str], docker_env: dict[str, str]
) -> Iterator[Function]:
    """Start ``image`` with ``handler`` as its command (what ImageConfig.Command sets) and stop
    it afterwards. The emulator listens on 8080, published on 127.0.0.1 only."""
    variables = [arg for name, value in environment.items() for arg in ("-e", f"{name}={value}")]
    container = docker(
        "run", "--detach", "--publish", "127.0.0.1::8080", *variables, image, handler,
        env=docker_env,
    )  # fmt: skip
    try:
        port = docker("port", container, "8080/tcp", env=docker_env).splitlines()[0]
        url = f"http://127.0.0.1:{port.rpartition(':')[2]}{INVOKE_PATH}"
        _wait_for_emulator(url)
        yield Function(container=container, url=url, docker_env=docker_env)
    finally:
        docker("rm", "--force", container, env=docker_env, check=False)


def _wait_for_emulator(url: str, *, seconds: float = 30) -> None:
    """The emulator answers once it listens; the function itself starts on the first invoke."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            httpx.get(url.rsplit("/2015-03-31", 1)[0] + "/", timeout=1)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
