/**
 * Server configuration: read once from flags, `ROLLCALL_*` environment
 * variables and defaults (in that order of precedence), validated, frozen.
 * On failure every problem is listed at once. Nothing else in the server
 * reads process.env.
 */
import net from 'node:net';
import path from 'node:path';
import { RollcallError } from '../common/errors.js';

/** The validated server configuration. */
export interface ServerConfig {
  readonly dataDir: string;
  readonly listenHost: string;
  readonly agentPort: number;
  readonly consolePort: number;
  /** Host names / addresses agents use to reach us; all go into the server certificate. */
  readonly publicHosts: readonly string[];
  readonly checkinIntervalSec: number;
  readonly helloTimeoutMs: number;
  readonly handshakeTimeoutMs: number;
  readonly pingIntervalMs: number;
  /** Per-connection frame budget: sustained rate and burst. */
  readonly maxFramesPerSec: number;
  readonly frameBurst: number;
  /** Most agent channels held at once; beyond that new ones are closed with OVERLOADED. */
  readonly maxAgents: number;
  /** Most agent-port connections in their TLS handshake at once; more are shed before TLS (server/admission.ts). */
  readonly maxPendingHandshakes: number;
  /** Base of the retry delay advised to shed agents (each gets base plus a random part up to base). */
  readonly overloadRetryAfterMs: number;
  /** Failed enrollments allowed per source address per window. */
  readonly enrollFailuresPerWindow: number;
  readonly enrollFailureWindowMs: number;
  /** Longest a check-in waits in memory before its batch is written. */
  readonly flushDelayMs: number;
  readonly synchronous: 'FULL' | 'NORMAL';
  /** Automatic MSP sync interval, in seconds (default 24 h). */
  readonly mspSyncIntervalSec: number;
  /** Whether the console port is meant to be reachable from customers' networks; `restricted` flags it when it is. */
  readonly consoleExposure: 'public' | 'restricted';
  /** Where health alerts are POSTed as JSON (http or https); null: alerts are only logged. */
  readonly alertWebhookUrl: string | null;
  /** Minutes a required port must fail from a customer before it is alerted. */
  readonly portAlertAfterMin: number;
  /** How often the alert conditions are evaluated. */
  readonly alertIntervalMs: number;
  /** How long after start customers going dark are not alerted (agents reconnect after a restart). */
  readonly alertGraceMs: number;
  /** Lifetime of agent certificates issued at enrollment and renewal, in seconds (default 825 days). */
  readonly agentCertValiditySec: number;
  readonly logLevel: string;
  /** The Linux agent executable served on the agent port; null: dist/rollcall-agent of this package. */
  readonly agentBinary: string | null;
  /** The Windows agent executable served on the agent port; null: none. */
  readonly agentBinaryWindows: string | null;
  /**
   * Agent worker processes serving the agent port (node:cluster); 0: the one
   * server process serves it. Storage stays in the primary either way.
   */
  readonly agentWorkers: number;
  /** Password of the first console admin (made on first start when no admin exists); null: a generated one is printed once. */
  readonly adminPassword: string | null;
}

/** Defaults for every field. */
export const DEFAULT_SERVER_CONFIG: ServerConfig = Object.freeze({
  dataDir: './data',
  listenHost: '0.0.0.0',
  agentPort: 2222,
  consolePort: 8443,
  publicHosts: Object.freeze([]) as readonly string[],
  checkinIntervalSec: 60,
  helloTimeoutMs: 10_000,
  handshakeTimeoutMs: 10_000,
  pingIntervalMs: 30_000,
  maxFramesPerSec: 5,
  frameBurst: 20,
  maxAgents: 200_000,
  maxPendingHandshakes: 256,
  overloadRetryAfterMs: 30_000,
  enrollFailuresPerWindow: 10,
  enrollFailureWindowMs: 60_000,
  flushDelayMs: 0,
  synchronous: 'FULL',
  mspSyncIntervalSec: 86_400,
  consoleExposure: 'public',
  alertWebhookUrl: null,
  portAlertAfterMin: 15,
  alertIntervalMs: 60_000,
  alertGraceMs: 600_000,
  agentCertValiditySec: 825 * 86_400,
  logLevel: 'info',
  agentBinary: null,
  agentBinaryWindows: null,
  adminPassword: null,
  agentWorkers: 0,
});

const ENV_NAMES: Partial<Record<keyof ServerConfig, string>> = {
  dataDir: 'ROLLCALL_DATA_DIR',
  listenHost: 'ROLLCALL_LISTEN_HOST',
  agentPort: 'ROLLCALL_AGENT_PORT',
  consolePort: 'ROLLCALL_CONSOLE_PORT',
  publicHosts: 'ROLLCALL_PUBLIC_HOST',
  checkinIntervalSec: 'ROLLCALL_CHECKIN_INTERVAL',
  logLevel: 'ROLLCALL_LOG_LEVEL',
  mspSyncIntervalSec: 'ROLLCALL_MSP_SYNC_INTERVAL',
  consoleExposure: 'ROLLCALL_CONSOLE_EXPOSURE',
  alertWebhookUrl: 'ROLLCALL_ALERT_WEBHOOK',
  portAlertAfterMin: 'ROLLCALL_PORT_ALERT_AFTER_MIN',
  agentBinary: 'ROLLCALL_AGENT_BINARY',
  agentBinaryWindows: 'ROLLCALL_AGENT_BINARY_WINDOWS',
  adminPassword: 'ROLLCALL_ADMIN_PASSWORD',
  agentCertValiditySec: 'ROLLCALL_AGENT_CERT_VALIDITY_SEC',
  agentWorkers: 'ROLLCALL_AGENT_WORKERS',
  maxPendingHandshakes: 'ROLLCALL_MAX_PENDING_HANDSHAKES',
  maxAgents: 'ROLLCALL_MAX_AGENTS',
};

/** Environment variable names, for --help and docs. */
export const SERVER_ENV_NAMES: Readonly<Partial<Record<keyof ServerConfig, string>>> = Object.freeze(ENV_NAMES);

/** Most agent workers a server may run. */
export const MAX_AGENT_WORKERS = 64;

type RawConfig = { [K in keyof ServerConfig]?: unknown };

function intIn(problems: string[], name: string, value: unknown, min: number, max: number): number {
  const n = typeof value === 'number' ? value : typeof value === 'string' && /^\d+$/.test(value.trim()) ? Number(value) : NaN;
  if (!Number.isInteger(n) || n < min || n > max) {
    problems.push(`${name} must be a whole number from ${min} to ${max} (got ${JSON.stringify(value)})`);
    return min;
  }
  return n;
}

function hostList(problems: string[], value: unknown): string[] {
  const list = Array.isArray(value) ? value : typeof value === 'string' ? value.split(',') : [];
  const hosts: string[] = [];
  for (const item of list) {
    const h = String(item).trim();
    if (!h) continue;
    if (!net.isIP(h) && !/^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/.test(h)) {
      problems.push(`public host "${h}" is neither a host name nor an IP address`);
      continue;
    }
    hosts.push(h.toLowerCase());
  }
  return [...new Set(hosts)];
}

function webhookUrl(problems: string[], value: unknown): string | null {
  if (value === null || value === undefined || value === '') return null;
  const text = String(value).trim();
  const url = URL.canParse(text) ? new URL(text) : undefined;
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    problems.push('alert webhook must be an http:// or https:// URL');
    return null;
  }
  return url.href;
}

function optionalPath(value: unknown): string | null {
  return value === null || value === undefined || value === '' ? null : path.resolve(String(value));
}

/**
 * Builds a validated, frozen configuration from explicit values (flags or
 * a caller's overrides) and the environment. Throws RollcallError
 * `CONFIG_INVALID` listing every problem.
 */
export function resolveServerConfig(given: RawConfig = {}, env: Readonly<Record<string, string | undefined>> = {}): ServerConfig {
  const pick = (key: keyof ServerConfig): unknown => {
    if (given[key] !== undefined) return given[key];
    const envName = ENV_NAMES[key];
    if (envName && env[envName] !== undefined && env[envName] !== '') return env[envName];
    return DEFAULT_SERVER_CONFIG[key];
  };
  const problems: string[] = [];
  const listenHost = String(pick('listenHost'));
  if (!net.isIP(listenHost) && listenHost !== 'localhost') problems.push(`listen host "${listenHost}" must be an IP address`);
  const agentPort = intIn(problems, 'agent port', pick('agentPort'), 0, 65535);
  const consolePort = intIn(problems, 'console port', pick('consolePort'), 0, 65535);
  if (agentPort !== 0 && agentPort === consolePort) problems.push('agent port and console port must differ');
  const synchronous = String(pick('synchronous')).toUpperCase();
  if (synchronous !== 'FULL' && synchronous !== 'NORMAL') problems.push('synchronous must be FULL or NORMAL');
  const logLevel = String(pick('logLevel'));
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(logLevel)) problems.push(`log level "${logLevel}" is not a pino level`);
  const consoleExposure = String(pick('consoleExposure'));
  if (consoleExposure !== 'public' && consoleExposure !== 'restricted') problems.push(`console exposure must be public or restricted (got "${consoleExposure}")`);
  const adminPassword = pick('adminPassword');
  if (adminPassword !== null && (typeof adminPassword !== 'string' || adminPassword.length < 12 || adminPassword.length > 1024)) {
    problems.push('the first admin password (ROLLCALL_ADMIN_PASSWORD) must be 12 to 1024 characters');
  }
  const config: ServerConfig = {
    dataDir: path.resolve(String(pick('dataDir'))),
    listenHost,
    agentPort,
    consolePort,
    publicHosts: Object.freeze(hostList(problems, pick('publicHosts'))),
    checkinIntervalSec: intIn(problems, 'check-in interval', pick('checkinIntervalSec'), 1, 86_400),
    helloTimeoutMs: intIn(problems, 'hello timeout', pick('helloTimeoutMs'), 10, 600_000),
    handshakeTimeoutMs: intIn(problems, 'handshake timeout', pick('handshakeTimeoutMs'), 10, 600_000),
    pingIntervalMs: intIn(problems, 'ping interval', pick('pingIntervalMs'), 10, 3_600_000),
    maxFramesPerSec: intIn(problems, 'max frames per second', pick('maxFramesPerSec'), 1, 1_000_000),
    frameBurst: intIn(problems, 'frame burst', pick('frameBurst'), 1, 1_000_000),
    maxAgents: intIn(problems, 'max agents', pick('maxAgents'), 1, 10_000_000),
    maxPendingHandshakes: intIn(problems, 'max pending handshakes', pick('maxPendingHandshakes'), 1, 1_000_000),
    overloadRetryAfterMs: intIn(problems, 'overload retry delay', pick('overloadRetryAfterMs'), 0, 3_600_000),
    enrollFailuresPerWindow: intIn(problems, 'enrollment failures per window', pick('enrollFailuresPerWindow'), 1, 1_000_000),
    enrollFailureWindowMs: intIn(problems, 'enrollment failure window', pick('enrollFailureWindowMs'), 10, 86_400_000),
    flushDelayMs: intIn(problems, 'flush delay', pick('flushDelayMs'), 0, 10_000),
    synchronous: synchronous as 'FULL' | 'NORMAL',
    mspSyncIntervalSec: intIn(problems, 'MSP sync interval (seconds)', pick('mspSyncIntervalSec'), 60, 30 * 86_400),
    consoleExposure: consoleExposure as 'public' | 'restricted',
    alertWebhookUrl: webhookUrl(problems, pick('alertWebhookUrl')),
    portAlertAfterMin: intIn(problems, 'port alert delay (minutes)', pick('portAlertAfterMin'), 1, 7 * 1440),
    alertIntervalMs: intIn(problems, 'alert interval', pick('alertIntervalMs'), 10, 3_600_000),
    alertGraceMs: intIn(problems, 'alert grace period', pick('alertGraceMs'), 0, 86_400_000),
    agentCertValiditySec: intIn(problems, 'agent certificate validity (seconds)', pick('agentCertValiditySec'), 10, 3650 * 86_400),
    logLevel,
    agentBinary: optionalPath(pick('agentBinary')),
    agentBinaryWindows: optionalPath(pick('agentBinaryWindows')),
    adminPassword: typeof adminPassword === 'string' && adminPassword.length >= 12 ? adminPassword : null,
    agentWorkers: intIn(problems, 'agent workers', pick('agentWorkers'), 0, MAX_AGENT_WORKERS),
  };
  if (problems.length > 0) {
    throw new RollcallError('CONFIG_INVALID', `invalid configuration:\n  - ${problems.join('\n  - ')}`);
  }
  return Object.freeze(config);
}

/** Every host the server certificate must cover: the public hosts plus loopback names. */
export function certificateHosts(config: Pick<ServerConfig, 'publicHosts'>): string[] {
  return [...new Set([...config.publicHosts, 'localhost', '127.0.0.1'])];
}
