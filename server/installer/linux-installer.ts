/**
 * The Linux install script: POSIX sh, run as root on the computer to
 * enroll. It downloads the agent executable from the agent port over HTTPS
 * verified against the CA it carries (through the proxy when one is set),
 * refuses it unless its SHA-256 is the one embedded, installs it to
 * /opt/rollcall-agent, writes /etc/rollcall-agent/agent.json, enrolls into
 * /var/lib/rollcall-agent and registers a systemd unit that restarts on
 * failure. `--uninstall` removes all of it. `--root DIR` installs below DIR
 * (and registers no service); `--no-service` writes the unit file without
 * enabling it. See docs/install.md.
 */
import { checkInstallerValues, commentText, shQuote, type InstallerValues } from './script-values.js';

/** Installed paths (relative to the root). */
export const LINUX_PATHS = {
  binDir: '/opt/rollcall-agent',
  binary: '/opt/rollcall-agent/rollcall-agent',
  confDir: '/etc/rollcall-agent',
  config: '/etc/rollcall-agent/agent.json',
  stateDir: '/var/lib/rollcall-agent',
  unit: '/etc/systemd/system/rollcall-agent.service',
} as const;

/** The systemd unit the script installs. Exit 10 (refused for good: revoked) is not restarted. */
/**
 * The environment the service runs with. One malloc arena: the agent's work
 * is on one JavaScript thread, and glibc's per-thread arenas otherwise hold
 * memory for threads that are idle (measured: 0.4 MiB of idle RSS, which
 * keeps the agent under its 60 MB budget; see docs/agent.md).
 */
export const AGENT_SERVICE_ENV: Readonly<Record<string, string>> = Object.freeze({ MALLOC_ARENA_MAX: '1' });

export function systemdUnit(): string {
  const p = LINUX_PATHS;
  return `[Unit]
Description=Rollcall agent (connects this computer to its Rollcall server)
Wants=network-online.target
After=network-online.target
StartLimitIntervalSec=0

[Service]
Type=simple
${Object.entries(AGENT_SERVICE_ENV)
  .map(([k, v]) => `Environment=${k}=${v}\n`)
  .join('')}ExecStart=${p.binary} run --state-dir ${p.stateDir} --config ${p.config}
Restart=on-failure
RestartSec=10s
RestartPreventExitStatus=10
UMask=0077
NoNewPrivileges=yes
ProtectSystem=full
ProtectHome=read-only
PrivateTmp=yes
ReadWritePaths=${p.stateDir}

[Install]
WantedBy=multi-user.target
`;
}

/** The agent's configuration file: JSON; `proxy` only when one is set. */
export function agentConfigJson(v: Pick<InstallerValues, 'proxy'>): string {
  return `${JSON.stringify(v.proxy === null ? {} : { proxy: v.proxy }, null, 2)}\n`;
}

/** Renders the Linux installer for validated values. */
export function linuxInstaller(values: InstallerValues): string {
  const v = checkInstallerValues(values);
  const p = LINUX_PATHS;
  return `#!/bin/sh
# Rollcall agent installer for Linux x64.
# Group: ${commentText(v.groupPath)}
# Server instance ${commentText(v.instanceId)}; made ${commentText(v.generatedAt)}.
# Usage (as root): sh rollcall-install.sh [--no-service] [--root DIR] | --uninstall [--root DIR] | --print-config
# It holds an enrollment token: keep it like a password and delete it after use.
set -eu
set -f
umask 077

SERVERS=${shQuote(v.servers.join(' '))}
CA_PIN=${shQuote(v.caPin)}
ENROLL_TOKEN=${shQuote(v.token)}
PROXY=${shQuote(v.proxy ?? '')}
AGENT_SHA256=${shQuote(v.sha256)}
AGENT_PATH=${shQuote(v.downloadPath)}
CA_PEM=${shQuote(v.caPem.trimEnd(), { multiline: true })}
AGENT_CONFIG=${shQuote(agentConfigJson(v).trimEnd(), { multiline: true })}
SYSTEMD_UNIT=${shQuote(systemdUnit().trimEnd(), { multiline: true })}

fail() { printf 'rollcall-install: %s\\n' "$1" >&2; exit "\${2:-1}"; }
say() { printf 'rollcall-install: %s\\n' "$1"; }

ROOT=''
SERVICE=1
ACTION=install
while [ $# -gt 0 ]; do
  case "$1" in
    --root) [ $# -ge 2 ] || fail '--root needs a directory' 2; ROOT=$2; shift 2 ;;
    --root=*) ROOT=\${1#--root=}; shift ;;
    --no-service) SERVICE=0; shift ;;
    --uninstall) ACTION=uninstall; shift ;;
    --print-config) ACTION=print; shift ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) fail "unknown option: $1 (see --help)" 2 ;;
  esac
done
case "$ROOT" in ''|/*) ;; *) ROOT="$(pwd)/$ROOT" ;; esac
ROOT=\${ROOT%/}

BIN_DIR="$ROOT${p.binDir}"
BIN="$ROOT${p.binary}"
CONF_DIR="$ROOT${p.confDir}"
CONF="$ROOT${p.config}"
STATE_DIR="$ROOT${p.stateDir}"
UNIT="$ROOT${p.unit}"

if [ "$ACTION" = print ]; then
  printf 'servers=%s\\nca_pin=%s\\ntoken=%s\\nproxy=%s\\nsha256=%s\\npath=%s\\n' "$SERVERS" "$CA_PIN" "$ENROLL_TOKEN" "$PROXY" "$AGENT_SHA256" "$AGENT_PATH"
  exit 0
fi
if [ -z "$ROOT" ] && [ "$(id -u)" != 0 ]; then fail 'run me as root (or with --root DIR to install below DIR)' 2; fi
# Services are registered only on a real install: not below --root, not with --no-service.
if [ -n "$ROOT" ]; then SERVICE=0; fi

if [ "$ACTION" = uninstall ]; then
  if [ -z "$ROOT" ] && [ -f "$UNIT" ] && command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now rollcall-agent.service >/dev/null 2>&1 || true
  fi
  rm -f "$UNIT"
  if [ -z "$ROOT" ] && command -v systemctl >/dev/null 2>&1; then systemctl daemon-reload >/dev/null 2>&1 || true; fi
  rm -rf "$BIN_DIR" "$CONF_DIR" "$STATE_DIR"
  say "removed $BIN_DIR, $CONF_DIR, $STATE_DIR and $UNIT"
  exit 0
fi

if [ "$SERVICE" = 1 ] && ! command -v systemctl >/dev/null 2>&1; then fail 'systemctl not found: this installer needs systemd (or use --no-service)' 2; fi
if [ -e "$STATE_DIR/identity.json" ]; then fail "already installed ($STATE_DIR holds an enrollment); run with --uninstall first" 3; fi
command -v curl >/dev/null 2>&1 || fail 'curl is needed to download the agent' 2
command -v sha256sum >/dev/null 2>&1 || fail 'sha256sum is needed to check the download' 2

WORK=$(mktemp -d "\${TMPDIR:-/tmp}/rollcall-install.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
printf '%s\\n' "$CA_PEM" > "$WORK/ca.crt"

fetch() {
  if [ -n "$PROXY" ]; then
    curl -fsS -g --retry 2 --connect-timeout 15 --cacert "$WORK/ca.crt" --proxy "$PROXY" -o "$WORK/rollcall-agent" "https://$1$AGENT_PATH"
  else
    curl -fsS -g --retry 2 --connect-timeout 15 --cacert "$WORK/ca.crt" -o "$WORK/rollcall-agent" "https://$1$AGENT_PATH"
  fi
}
FETCHED=''
for server in $SERVERS; do
  say "downloading the agent from $server"
  if fetch "$server"; then FETCHED=$server; break; fi
  say "could not download from $server"
done
[ -n "$FETCHED" ] || fail 'no server could be reached to download the agent; nothing was installed' 4
GOT=$(sha256sum "$WORK/rollcall-agent" | cut -d ' ' -f 1)
if [ "$GOT" != "$AGENT_SHA256" ]; then
  fail "the downloaded agent's SHA-256 is $GOT, not the expected $AGENT_SHA256; refusing to install it (nothing was installed)" 5
fi

undo() { rm -rf "$BIN_DIR" "$CONF_DIR" "$STATE_DIR"; rm -f "$UNIT"; }
mkdir -p "$BIN_DIR" "$CONF_DIR" "$STATE_DIR"
chmod 755 "$BIN_DIR"
chmod 700 "$CONF_DIR" "$STATE_DIR"
cp "$WORK/rollcall-agent" "$BIN.tmp"
chmod 755 "$BIN.tmp"
mv "$BIN.tmp" "$BIN"
printf '%s\\n' "$AGENT_CONFIG" > "$CONF"
chmod 600 "$CONF"

# The server the download came from goes first (enrollment talks to the first); the rest keep their order.
set -- enroll --ca-pin "$CA_PIN" --state-dir "$STATE_DIR" --config "$CONF" --server "$FETCHED"
for server in $SERVERS; do [ "$server" = "$FETCHED" ] || set -- "$@" --server "$server"; done
if ! ROLLCALL_AGENT_TOKEN=$ENROLL_TOKEN "$BIN" "$@"; then
  undo
  fail 'enrollment failed (see above); nothing was left installed' 6
fi

mkdir -p "$(dirname "$UNIT")"
printf '%s\\n' "$SYSTEMD_UNIT" > "$UNIT.tmp"
chmod 644 "$UNIT.tmp"
mv "$UNIT.tmp" "$UNIT"
if [ "$SERVICE" = 1 ]; then
  systemctl daemon-reload
  systemctl enable --now rollcall-agent.service
  say 'installed and started rollcall-agent.service'
else
  say "installed; service not registered (unit file at $UNIT)"
fi
`;
}
