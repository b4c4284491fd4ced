"""Print an image's size, in all and by layer (what `make image` ends with).

python mk/image_size.py IMAGE      (DOCKER_HOST set to the project's daemon)
"""

from __future__ import annotations

import json
import subprocess
import sys

MB = 1_000_000


def main(image: str) -> int:
    inspect = subprocess.run(
        ["docker", "image", "inspect", image], capture_output=True, text=True, check=True
    )
    size = json.loads(inspect.stdout)[0]["Size"]
    history = subprocess.run(
        ["docker", "history", "--no-trunc", "--format", "{{json .}}", image],
        capture_output=True,
        text=True,
        check=True,
    )
    print(f"{image}: {size / MB:,.0f} MB uncompressed; its layers, the base's first:")
    for line in reversed(history.stdout.splitlines()):
        layer = json.loads(line)
        created_by = " ".join(layer["CreatedBy"].replace("/bin/sh -c #(nop) ", "").split())
        if layer["Size"] not in ("0B", "0"):
            print(f"  {layer['Size']:>9}  {created_by[:90]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
