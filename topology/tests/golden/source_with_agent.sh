#!/bin/bash
# strata-node-config v2
# Written by the Strata provider: first boot of one Strata node. Runs once, as root.
# Holds no secret: database credentials are read from SSM by the agent, AWS credentials come
# from the instance role. Progress goes to the instance's own tags (strata:node-state).
set -euo pipefail
# Failures inside functions trigger the ERR trap too, so every failure gets a reason.
set -o errtrace
umask 022

# ---- This node, as the provider rendered it (the rest of the script is the same on every node).
readonly STRATA_ENGINE='mariadb'
readonly STRATA_ENGINE_VERSION='10.11'
readonly STRATA_INSTALL_ENGINE='true'
readonly STRATA_AGENT_BUCKET='strata-orders-000000000000-us-east-1'
readonly STRATA_AGENT_KEY='agent/0.1.0/x86_64/6fee557128be1cc0fe1ee535e51193c4d073383b2bf53b232a365ba3880b534c/strata-agent'
readonly STRATA_AGENT_REGION='us-east-1'
readonly STRATA_AGENT_SHA256='6fee557128be1cc0fe1ee535e51193c4d073383b2bf53b232a365ba3880b534c'
readonly STRATA_SERVER_CONFIG_DIR='/etc/mysql/mariadb.conf.d'
readonly AGENT_BINARY='/usr/local/bin/strata-agent'
readonly AGENT_CONFIG='/etc/strata/node.json'
readonly AGENT_UNIT='strata-agent.service'
readonly TAG_NODE_STATE='strata:node-state'
readonly TAG_NODE_ERROR='strata:node-error'
readonly STATE_INSTALLING='installing'
readonly STATE_FAILED='failed'

# ---- Environment
# Tests only: a directory standing in for / for every file this script reads or writes, so it
# can run unprivileged against a fake root. Empty on a node.
ROOT="${STRATA_ROOT_PREFIX:-}"
IMDS="${AWS_EC2_METADATA_SERVICE_ENDPOINT:-http://169.254.169.254}"
IMDS="${IMDS%/}"
# SHA-256 of an empty body: S3 wants x-amz-content-sha256 on every signed request and curl
# before 8.x does not send it by itself.
readonly EMPTY_SHA256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855

STEP=start
FAIL_REASON=''
IMDS_TOKEN=''
INSTANCE_ID=''
REGION=''
CREDS_KEY=''
CREDS_SECRET=''
CREDS_TOKEN=''
OS_ID=''
OS_LIKE=''
OS_VERSION_ID=''
OS_CODENAME=''
FAMILY=''
MYSQL_SERIES=''
ENGINE_BIN=''
ENGINE_UNIT=''
ENGINE_SOCKET=''
DOWNLOAD=''

log() { printf 'strata-user-data: %s\n' "$*" >&2; }

step() {
  STEP="$1"
  log "step: $1"
}

# Stops the script with a reason; the EXIT trap reports it as "<step>: <reason>".
fail() {
  FAIL_REASON="$STEP: $*"
  exit 1
}

on_err() {
  [[ -n $FAIL_REASON ]] || FAIL_REASON="$STEP: command failed (exit $1): $2"
}

on_exit() {
  local rc=$?
  set +e
  [[ -z $DOWNLOAD ]] || rm -f "$DOWNLOAD"
  if ((rc != 0)); then
    local reason="${FAIL_REASON:-$STEP: failed (exit $rc)}"
    reason="${reason:0:255}"
    log "FAILED: $reason"
    stop_serving
    report_state "$STATE_FAILED" "$reason" || log "could not write the $STATE_FAILED tag"
  fi
  exit "$rc"
}

# A node that failed half-way must not serve: stop what packages or this script started.
stop_serving() {
  if [[ -n $ENGINE_UNIT ]]; then
    systemctl disable --now "$ENGINE_UNIT.service" >&2 || true
  fi
  if [[ -e $ROOT/etc/systemd/system/$AGENT_UNIT ]]; then
    systemctl disable --now "$AGENT_UNIT" >&2 || true
  fi
}

# ---- IMDSv2 and signed AWS calls
imds_token() {
  IMDS_TOKEN=$(curl -fsS --retry 10 --retry-connrefused --retry-delay 1 --max-time 10 \
    -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 21600" "$IMDS/latest/api/token")
}

imds_get() {
  curl -fsS --retry 5 --retry-connrefused --max-time 10 \
    -H "X-aws-ec2-metadata-token: $IMDS_TOKEN" "$IMDS/latest/$1"
}

# One string field of a JSON document on stdin (IMDS credentials: flat, no escapes).
json_field() {
  sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\"\([^\"]*\)\".*/\1/p" | head -n 1
}

# The instance role's credentials, fetched before each call: they rotate. Right after launch
# the instance profile may not have reached IMDS yet (IAM is eventually consistent; the path
# answers 404 until it has): wait up to a minute for it instead of failing the boot.
load_credentials() {
  local role="" doc="" i
  for i in $(seq 1 30); do
    if role=$(imds_get meta-data/iam/security-credentials/) && role="${role%%$'\n'*}" &&
      [[ -n $role ]] && doc=$(imds_get "meta-data/iam/security-credentials/$role"); then
      break
    fi
    doc=""
    sleep 2
  done
  [[ -n $doc ]] || return 1
  CREDS_KEY=$(json_field AccessKeyId <<<"$doc")
  CREDS_SECRET=$(json_field SecretAccessKey <<<"$doc")
  CREDS_TOKEN=$(json_field Token <<<"$doc")
  [[ -n $CREDS_KEY && -n $CREDS_SECRET ]]
}

# curl signed with SigV4 for one service and region. The credentials reach curl as a config
# file on stdin, not on its command line where any local user could read them.
aws_curl() {
  local service="$1" region="$2"
  shift 2
  load_credentials || return 1
  {
    printf 'user = "%s:%s"\n' "$CREDS_KEY" "$CREDS_SECRET"
    if [[ -n $CREDS_TOKEN ]]; then
      printf 'header = "X-Amz-Security-Token: %s"\n' "$CREDS_TOKEN"
    fi
  } | curl -fsS --retry 5 --retry-connrefused --max-time 300 \
    --aws-sigv4 "aws:amz:$region:$service" --config - "$@"
}

aws_domain() {
  case "$1" in
    cn-*) echo amazonaws.com.cn ;;
    *) echo amazonaws.com ;;
  esac
}

ec2_endpoint() {
  local ep="${AWS_ENDPOINT_URL_EC2:-${AWS_ENDPOINT_URL:-}}"
  if [[ -n $ep ]]; then
    echo "${ep%/}/"
  else
    echo "https://ec2.$REGION.$(aws_domain "$REGION")/"
  fi
}

# Path-style on an endpoint override (LocalStack, the node host), virtual-hosted on AWS.
s3_object_url() {
  local bucket="$1" key="$2" region="$3"
  local ep="${AWS_ENDPOINT_URL_S3:-${AWS_ENDPOINT_URL:-}}"
  if [[ -n $ep ]]; then
    echo "${ep%/}/$bucket/$key"
  else
    echo "https://$bucket.s3.$region.$(aws_domain "$region")/$key"
  fi
}

# Tags this instance with its state (and the reason when it failed), via EC2's Query API.
report_state() {
  local state="$1" reason="${2:-}"
  [[ -n $INSTANCE_ID && -n $REGION ]] || return 1
  local form=(
    --data-urlencode "Action=CreateTags"
    --data-urlencode "Version=2016-11-15"
    --data-urlencode "ResourceId.1=$INSTANCE_ID"
    --data-urlencode "Tag.1.Key=$TAG_NODE_STATE"
    --data-urlencode "Tag.1.Value=$state"
  )
  if [[ -n $reason ]]; then
    form+=(--data-urlencode "Tag.2.Key=$TAG_NODE_ERROR" --data-urlencode "Tag.2.Value=$reason")
  fi
  aws_curl ec2 "$REGION" "${form[@]}" -o /dev/null "$(ec2_endpoint)"
}

# ---- The OS and its packages
os_field() {
  sed -n "s/^$1=//p" "$2" | tail -n 1 | tr -d "\"'"
}

detect_os() {
  local f="$ROOT/etc/os-release"
  [[ -r $f ]] || f="$ROOT/usr/lib/os-release"
  [[ -r $f ]] || fail "no /etc/os-release: cannot tell which OS this is"
  OS_ID=$(os_field ID "$f")
  OS_LIKE=$(os_field ID_LIKE "$f")
  OS_VERSION_ID=$(os_field VERSION_ID "$f")
  OS_CODENAME=$(os_field VERSION_CODENAME "$f")
  case " $OS_ID $OS_LIKE " in
    *" debian "* | *" ubuntu "*) FAMILY=debian ;;
    *)
      if [[ $OS_ID == amzn && $OS_VERSION_ID == 2023 ]]; then
        FAMILY=al2023
      else
        FAMILY=unknown
      fi
      ;;
  esac
  log "OS: ID=$OS_ID VERSION_ID=$OS_VERSION_ID (family $FAMILY)"
}

# The server binary if the image has one.
find_engine_binary() {
  local names=(mysqld) name dir
  [[ $STRATA_ENGINE != mariadb ]] || names=(mariadbd mysqld)
  for name in "${names[@]}"; do
    for dir in /usr/sbin /usr/libexec /usr/bin /usr/local/sbin /usr/local/bin; do
      if [[ -x $ROOT$dir/$name ]]; then
        echo "$dir/$name"
        return 0
      fi
    done
  done
  return 1
}

# Runs a command with its output in the log; on failure, stops with its last error line.
run_logged() {
  local what="$1" out rc=0 last
  shift
  out=$(mktemp)
  "$@" >"$out" 2>&1 || rc=$?
  cat "$out" >&2
  last=$(grep -E '^(E:|Error)' "$out" | tail -n 1 || true)
  rm -f "$out"
  ((rc == 0)) || fail "$what failed (exit $rc)${last:+: $last}"
}

# MySQL's repository series for the configured version, in MYSQL_SERIES.
mysql_series() {
  case "$STRATA_ENGINE_VERSION" in
    8.4*) MYSQL_SERIES=8.4 ;;
    8.0*) MYSQL_SERIES=8.0 ;;
    *) fail "MySQL $STRATA_ENGINE_VERSION is not in MySQL's package repository (8.4, 8.0)" ;;
  esac
}

# MySQL's APT repository, added by hand as MySQL documents it (instead of the interactive
# mysql-apt-config package); the same release key signs the APT and the Yum repositories.
add_mysql_apt_repo() {
  local component
  mysql_series
  component="mysql-$MYSQL_SERIES"
  [[ $MYSQL_SERIES != 8.4 ]] || component=mysql-8.4-lts
  [[ -n $OS_CODENAME ]] || fail "no VERSION_CODENAME in /etc/os-release for MySQL's APT repository"
  install -d -m 0755 "$ROOT/etc/apt/keyrings" "$ROOT/etc/apt/sources.list.d"
  curl -fsS --retry 5 --max-time 60 -o "$ROOT/etc/apt/keyrings/mysql.asc" \
    https://repo.mysql.com/RPM-GPG-KEY-mysql-2023 || fail "could not download MySQL's repository key"
  chmod 0644 "$ROOT/etc/apt/keyrings/mysql.asc"
  printf 'deb [signed-by=/etc/apt/keyrings/mysql.asc] http://repo.mysql.com/apt/%s/ %s %s\n' \
    "$OS_ID" "$OS_CODENAME" "$component" >"$ROOT/etc/apt/sources.list.d/mysql.list"
  chmod 0644 "$ROOT/etc/apt/sources.list.d/mysql.list"
}

# MySQL's Yum repository for EL9, which AL2023 installs from; written out instead of the
# mysql84-community-release RPM, whose $releasever (2023 on AL2023) would pick no repository.
add_mysql_yum_repo() {
  mysql_series
  install -d -m 0755 "$ROOT/etc/yum.repos.d"
  cat >"$ROOT/etc/yum.repos.d/mysql-community.repo" <<EOF
[mysql-$MYSQL_SERIES-community]
name=MySQL $MYSQL_SERIES Community Server
baseurl=https://repo.mysql.com/yum/mysql-$MYSQL_SERIES-community/el/9/\$basearch/
enabled=1
gpgcheck=1
gpgkey=https://repo.mysql.com/RPM-GPG-KEY-mysql-2023
EOF
  chmod 0644 "$ROOT/etc/yum.repos.d/mysql-community.repo"
}

install_engine_apt() {
  local pkgs
  command -v apt-get >/dev/null || fail "no supported package manager (ID=$OS_ID: no apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  case "$STRATA_ENGINE" in
    mariadb) pkgs=(mariadb-server mariadb-client mariadb-backup) ;;
    mysql)
      add_mysql_apt_repo
      pkgs=(mysql-server mysql-client)
      ;;
  esac
  # A failed refresh is not fatal: the image's own lists may still hold the packages.
  apt-get update -q >&2 || log "apt-get update failed; installing from the lists the image has"
  run_logged "apt-get install ${pkgs[*]}" apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${pkgs[@]}"
}

install_engine_dnf() {
  local pkgs v
  command -v dnf >/dev/null || fail "no supported package manager (ID=$OS_ID: no dnf)"
  case "$STRATA_ENGINE" in
    mariadb)
      # AL2023 ships MariaDB per version: mariadb105-* (10.5) and mariadb1011-* (10.11, our
      # default): the server, the client (the package without a suffix) and mariadb-backup.
      v="${STRATA_ENGINE_VERSION//./}"
      pkgs=("mariadb$v-server" "mariadb$v" "mariadb$v-backup")
      ;;
    mysql)
      add_mysql_yum_repo
      pkgs=(mysql-community-server mysql-community-client)
      ;;
  esac
  run_logged "dnf install ${pkgs[*]}" dnf install -y "${pkgs[@]}"
}

ensure_engine() {
  if ENGINE_BIN=$(find_engine_binary); then
    log "engine already on the image: $ENGINE_BIN"
  elif [[ $STRATA_INSTALL_ENGINE != true ]]; then
    fail "the image has no $STRATA_ENGINE server and engine packages are off (ami_id images must carry it)"
  else
    case "$FAMILY" in
      debian) install_engine_apt ;;
      al2023) install_engine_dnf ;;
      *) fail "no supported package manager (ID=$OS_ID)" ;;
    esac
    ENGINE_BIN=$(find_engine_binary) || fail "the packages installed no $STRATA_ENGINE server binary"
  fi
  server_layout
}

unit_exists() {
  local dir
  for dir in /etc/systemd/system /usr/lib/systemd/system /lib/systemd/system; do
    [[ ! -e $ROOT$dir/$1.service ]] || return 0
  done
  return 1
}

# The server's systemd unit and socket, as this OS's packages lay them out.
server_layout() {
  case "$STRATA_ENGINE/$FAMILY" in
    mariadb/debian) ENGINE_UNIT=mariadb ENGINE_SOCKET=/run/mysqld/mysqld.sock ;;
    mariadb/al2023) ENGINE_UNIT=mariadb ENGINE_SOCKET=/var/lib/mysql/mysql.sock ;;
    mysql/debian) ENGINE_UNIT=mysql ENGINE_SOCKET=/run/mysqld/mysqld.sock ;;
    mysql/al2023) ENGINE_UNIT=mysqld ENGINE_SOCKET=/var/lib/mysql/mysql.sock ;;
    *)
      # An image built elsewhere with the engine inside: find its unit, ask it for its socket.
      local u
      for u in mariadb mysqld mysql; do
        if unit_exists "$u"; then
          ENGINE_UNIT=$u
          break
        fi
      done
      [[ -n $ENGINE_UNIT ]] || fail "no mariadb, mysqld or mysql systemd unit on this image (ID=$OS_ID)"
      ENGINE_SOCKET=$(my_print_defaults mysqld 2>/dev/null | sed -n 's/^--socket=//p' | tail -n 1 || true)
      ENGINE_SOCKET="${ENGINE_SOCKET:-/var/lib/mysql/mysql.sock}"
      ;;
  esac
  log "server: unit $ENGINE_UNIT, socket $ENGINE_SOCKET"
}

# ---- The agent
install_agent() {
  local dest="$ROOT$AGENT_BINARY" url got
  if [[ -z $STRATA_AGENT_BUCKET ]]; then
    [[ -x $dest ]] || fail "no agent artifact configured and the image has no $AGENT_BINARY"
    log "agent already on the image"
    return 0
  fi
  if [[ -x $dest ]]; then
    got=$(sha256sum "$dest")
    if [[ ${got%% *} == "$STRATA_AGENT_SHA256" ]]; then
      log "agent already installed"
      return 0
    fi
  fi
  url=$(s3_object_url "$STRATA_AGENT_BUCKET" "$STRATA_AGENT_KEY" "$STRATA_AGENT_REGION")
  install -d -m 0755 "${dest%/*}"
  DOWNLOAD="$dest.download"
  rm -f "$DOWNLOAD"
  log "fetching s3://$STRATA_AGENT_BUCKET/$STRATA_AGENT_KEY"
  aws_curl s3 "$STRATA_AGENT_REGION" -H "x-amz-content-sha256: $EMPTY_SHA256" \
    -o "$DOWNLOAD" "$url" ||
    fail "download of s3://$STRATA_AGENT_BUCKET/$STRATA_AGENT_KEY failed (curl exit $?)"
  got=$(sha256sum "$DOWNLOAD")
  got="${got%% *}"
  if [[ $got != "$STRATA_AGENT_SHA256" ]]; then
    rm -f "$DOWNLOAD"
    fail "checksum mismatch (expected $STRATA_AGENT_SHA256, got $got)"
  fi
  chmod 0755 "$DOWNLOAD"
  mv -f "$DOWNLOAD" "$dest"
  DOWNLOAD=''
}

# ---- The server and the agent's unit
# The agent writes the server config into STRATA_SERVER_CONFIG_DIR. Debian's my.cnf reads that
# folder already; RPM layouts (/etc/my.cnf, /etc/my.cnf.d) are told to read it too.
include_server_config_dir() {
  local dir="$STRATA_SERVER_CONFIG_DIR"
  install -d -m 0755 "$ROOT$dir"
  if grep -rqsF -- "$dir" "$ROOT/etc/my.cnf" "$ROOT/etc/my.cnf.d" "$ROOT/etc/mysql"; then
    return 0
  fi
  if [[ -d $ROOT/etc/my.cnf.d ]]; then
    printf '!includedir %s\n' "$dir" >"$ROOT/etc/my.cnf.d/zz-strata.cnf"
    chmod 0644 "$ROOT/etc/my.cnf.d/zz-strata.cnf"
  else
    printf '\n!includedir %s\n' "$dir" >>"$ROOT/etc/my.cnf"
  fi
}

start_engine() {
  local i
  if [[ $STRATA_ENGINE/$FAMILY == mysql/al2023 && ! -d $ROOT/var/lib/mysql/mysql ]]; then
    # MySQL's RPM would initialize on first start with a random, expired root password; the
    # agent logs in as root over the socket, like on Debian.
    run_logged "mysqld --initialize-insecure" "$ENGINE_BIN" --initialize-insecure --user=mysql
  fi
  run_logged "systemctl enable --now $ENGINE_UNIT" systemctl enable --now "$ENGINE_UNIT.service"
  for i in $(seq 1 60); do
    if systemctl is-active --quiet "$ENGINE_UNIT.service"; then
      return 0
    fi
    log "waiting for $ENGINE_UNIT ($i)"
    sleep 2
  done
  fail "$ENGINE_UNIT did not become active"
}

write_agent_unit() {
  local unit="$ROOT/etc/systemd/system/$AGENT_UNIT"
  install -d -m 0755 "${unit%/*}"
  cat >"$unit" <<EOF
[Unit]
Description=Strata node agent
Wants=network-online.target
After=network-online.target local-fs.target $ENGINE_UNIT.service

[Service]
ExecStart=$AGENT_BINARY run --config $AGENT_CONFIG --socket $ENGINE_SOCKET --restart-command "systemctl restart $ENGINE_UNIT"
Restart=always
RestartSec=5

[Install]
WantedBy=multi-user.target
EOF
  chmod 0644 "$unit"
}

# The node config the agent reads (no secret in it: credentials are SSM parameter names).
# Its folder stays traversable: the server (user mysql) reads the TLS files the agent puts in
# /etc/strata/tls.
write_node_config() {
  install -d -m 0755 "$ROOT${AGENT_CONFIG%/*}"
  (umask 077 && cat >"$ROOT$AGENT_CONFIG") <<'STRATA_NODE_JSON'
{
  "version": 2,
  "cluster_id": "orders",
  "node_id": "orders-source",
  "node_name": "orders-source",
  "role": "source",
  "region": "us-east-1",
  "engine": "mariadb",
  "engine_version": "10.11",
  "server_id": 1,
  "replication": {
    "mode": "semi_sync",
    "ack_count": 1,
    "ack_timeout_ms": 10000,
    "user": "strata_repl",
    "credential": {
      "ssm_parameter": "/strata/orders/replication-password",
      "ssm_region": "us-east-1"
    }
  },
  "local": {
    "port": 3306
  },
  "tls": {
    "cert_file": "/etc/strata/tls/server.crt",
    "key_file": "/etc/strata/tls/server.key"
  },
  "storage": {
    "device": "/dev/xvdf",
    "mount_point": "/var/lib/mysql",
    "max_size_gib": 100,
    "grow_at_percent": 80,
    "grow_by_percent": 20,
    "min_step_gib": 10
  },
  "admin": {
    "user": "strata_admin",
    "credential": {
      "ssm_parameter": "/strata/orders/admin-password",
      "ssm_region": "us-east-1"
    }
  },
  "install": {
    "engine_packages": true,
    "agent": {
      "bucket": "strata-orders-000000000000-us-east-1",
      "key": "agent/0.1.0/x86_64/6fee557128be1cc0fe1ee535e51193c4d073383b2bf53b232a365ba3880b534c/strata-agent",
      "region": "us-east-1",
      "sha256": "6fee557128be1cc0fe1ee535e51193c4d073383b2bf53b232a365ba3880b534c"
    }
  },
  "tags": {
    "team": "payments"
  }
}
STRATA_NODE_JSON
  chmod 0600 "$ROOT$AGENT_CONFIG"
}

# ---- Main
trap on_exit EXIT
trap 'on_err $? "$BASH_COMMAND"' ERR

step imds
imds_token || fail "no IMDSv2 token from $IMDS"
INSTANCE_ID=$(imds_get meta-data/instance-id) || fail "no instance id from IMDS"
REGION=$(imds_get meta-data/placement/region) || fail "no region from IMDS"
log "instance $INSTANCE_ID in $REGION"

step report
report_state "$STATE_INSTALLING" ||
  fail "CreateTags on $INSTANCE_ID failed: does the instance role allow ec2:CreateTags on itself?"

step os
detect_os

step install
ensure_engine

step agent
install_agent

step config
write_node_config
include_server_config_dir

step engine
start_engine

step start
write_agent_unit
systemctl daemon-reload
run_logged "systemctl enable --now $AGENT_UNIT" systemctl enable --now "$AGENT_UNIT"
log "done: $AGENT_UNIT runs and tags the instance ready once it bootstrapped"
