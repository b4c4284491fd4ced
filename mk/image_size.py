"""Print an image's size, in all and by part (what `make image` ends with).

    python mk/image_size.py IMAGE      (DOCKER_HOST set to the project's daemon)

The parts are infra/Dockerfile's layers by what made them: the base image, the dependencies
(pip), the model (/opt/models) and the code (everything else).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

MB = 1_000_000
UNITS = {"B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9}


def part(created_by: str) -> str:
    if "pip install" in created_by:
        return "dependencies"
    if created_by.lstrip().startswith("COPY") and "/opt/models/" in created_by:
        return "model"
    return "code"


def size_of(text: str) -> float:
    found = re.fullmatch(r"([\d.]+)\s*([kKMG]?B)", text.strip())
    return float(found[1]) * UNITS[found[2]] if found else 0.0


def main(image: str) -> int:
    def docker(*args: str) -> str:
        return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout

    total = json.loads(docker("image", "inspect", image))[0]["Size"]
    layers = [
        json.loads(line)
        for line in docker("history", "--no-trunc", "--format", "{{json .}}", image).splitlines()
    ]
    parts: dict[str, float] = {"base": 0.0, "dependencies": 0.0, "model": 0.0, "code": 0.0}
    # The base image's own history lists its instructions too: everything up to the first
    # layer this Dockerfile made counts as the base.
    ours = False
    for layer in reversed(layers):
        created_by = layer["CreatedBy"].replace("/bin/sh -c #(nop) ", "")
        ours = ours or "MODEL_ID" in created_by or "requirements-lambda" in created_by
        parts[part(created_by) if ours else "base"] += size_of(layer["Size"])
    shown = ", ".join(f"{name} {size / MB:,.0f} MB" for name, size in parts.items())
    print(f"{image}: {total / MB:,.0f} MB uncompressed ({shown})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
