#!/usr/bin/env bash
# A stand-in for AWS's Lambda base image, made on this machine because no container registry is
# reachable from it, tagged like the real one so infra/Dockerfile builds unchanged:
#
#   mk/lambda_base.sh [TAG]      (default public.ecr.aws/lambda/python:3.12; needs root)
#
# It has what the AWS image offers the Dockerfile and the functions: Python in /var/lang (pip on
# PATH), the Runtime Interface Client (awslambdaric, from PyPI), the Runtime Interface Emulator
# (the binary AWS SAM CLI ships in its Python package: samcli/local/rapid/aws-lambda-rie-x86_64),
# an AWS-style /lambda-entrypoint.sh and LAMBDA_TASK_ROOT=/var/task. It differs in one way that
# matters: the root file system is Debian 12 (debootstrap, minbase), whose Python is 3.11, not
# the 3.12 of the image it stands in for; the Dockerfile's code is the same for both.
#
# Runs against the project's own daemon (mk/dockerd.sh) only, so the tag never reaches the
# user's own Docker, where it would shadow AWS's image in a later `sam build`.
set -euo pipefail

TAG=${1:-public.ecr.aws/lambda/python:3.12}
HERE=$(cd "$(dirname "$0")" && pwd)
eval "$("$HERE/dockerd.sh" env)"
SAM_PYTHON=${SAM_PYTHON:-$HERE/../.venv-sam/bin/python}
PIP=${PIP:-$HERE/../.venv/bin/pip}
# The Runtime Interface Client, pinned like the project's own requirements.
RIC=awslambdaric==4.2.2
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if docker image inspect "$TAG" >/dev/null 2>&1; then
  exit 0
fi
for tool in debootstrap; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "lambda_base.sh: installing $tool" >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >/dev/null
    else
      echo "lambda_base.sh: $tool is missing (apt-get install $tool, as root)" >&2
      exit 1
    fi
  fi
done
rie=$("$SAM_PYTHON" -c 'import pathlib, samcli; print(pathlib.Path(samcli.__file__).parent / "local/rapid/aws-lambda-rie-x86_64")')
[ -x "$rie" ] || { echo "lambda_base.sh: no RIE at $rie (make .venv-sam first)" >&2; exit 1; }

work=$(mktemp -d /var/tmp/lambda-base.XXXXXX)
trap 'umount "$work/rootfs/proc" 2>/dev/null || true; rm -rf "$work"' EXIT
rootfs="$work/rootfs"
echo "lambda_base.sh: debootstrap bookworm from $MIRROR (a few minutes)" >&2
debootstrap --variant=minbase --include=python3,python3-venv bookworm "$rootfs" "$MIRROR" \
  >"$work/debootstrap.log" 2>&1 || { tail -n 20 "$work/debootstrap.log" >&2; exit 1; }

# /var/lang: a virtual environment of Debian's Python, so `python` and `pip` are the image's own.
# A clean environment: the host's pip settings (find-links, indexes) mean nothing in the chroot.
in_root() { chroot "$rootfs" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root LANG=C.UTF-8 "$@"; }
in_root python3 -m venv /var/lang
"$PIP" download --quiet --quiet --dest "$rootfs/tmp/wheels" "$RIC"
in_root /var/lang/bin/pip install --quiet --no-index --find-links /tmp/wheels "$RIC"
rm -rf "$rootfs/tmp/wheels" "$rootfs/root/.cache" "$rootfs/var/cache/apt/archives/"*.deb \
  "$rootfs/var/lib/apt/lists/"*
install -m 0755 "$rie" "$rootfs/usr/local/bin/aws-lambda-rie"
mkdir -p "$rootfs/var/task" "$rootfs/var/runtime" "$rootfs/opt"

# As in AWS's image: the handler is the one argument; without a Runtime API (not on Lambda) the
# emulator starts the runtime and serves invocations on port 8080.
cat >"$rootfs/lambda-entrypoint.sh" <<'EOF'
#!/bin/sh
if [ $# -ne 1 ]; then
  echo "entrypoint requires the handler name to be the first argument" 1>&2
  exit 142
fi
export _HANDLER="$1"
if [ -z "${AWS_LAMBDA_RUNTIME_API:-}" ]; then
  exec /usr/local/bin/aws-lambda-rie /var/runtime/bootstrap "$_HANDLER"
fi
exec /var/runtime/bootstrap "$_HANDLER"
EOF
cat >"$rootfs/var/runtime/bootstrap" <<'EOF'
#!/bin/sh
cd "${LAMBDA_TASK_ROOT:-/var/task}" || exit 1
exec /var/lang/bin/python -m awslambdaric "$1"
EOF
chmod 0755 "$rootfs/lambda-entrypoint.sh" "$rootfs/var/runtime/bootstrap"

echo "lambda_base.sh: importing as $TAG" >&2
tar -C "$rootfs" -c . | docker import \
  --change 'ENV LANG=en_US.UTF-8' \
  --change 'ENV TZ=:/etc/localtime' \
  --change 'ENV PATH=/var/lang/bin:/usr/local/bin:/usr/bin:/bin:/opt/bin' \
  --change 'ENV LAMBDA_TASK_ROOT=/var/task' \
  --change 'ENV LAMBDA_RUNTIME_DIR=/var/runtime' \
  --change 'WORKDIR /var/task' \
  --change 'ENTRYPOINT ["/lambda-entrypoint.sh"]' \
  --message "stand-in for $TAG: Debian 12, Python 3.11 in /var/lang, awslambdaric, the RIE" \
  - "$TAG" >/dev/null
docker image inspect "$TAG" --format 'lambda_base.sh: {{.RepoTags}} {{.Size}} bytes' >&2
