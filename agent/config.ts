/**
 * Agent configuration: flags first, then `ROLLCALL_AGENT_*` environment
 * variables, then defaults. Nothing else in the agent reads process.env.
 */
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_BACKOFF, type BackoffPolicy } from '../common/backoff.js';
import { parseDuration } from '../common/duration.js';
import { RollcallError } from '../common/errors.js';
import { parseProxyUrl, type ProxyConfig } from '../common/http-proxy.js';

/** Settings shared by every agent command. */
export interface AgentCommonConfig {
  readonly stateDir: string;
  readonly logLevel: string;
  /** Test seam: makes this process look like other hardware. */
  readonly fingerprintSalt: string;
}

/** Settings of `run`. */
export interface AgentRunConfig extends AgentCommonConfig {
  readonly backoff: BackoffPolicy;
  readonly connectTimeoutMs: number;
  readonly ackTimeoutMs: number;
  readonly intervalOverrideSec: number | undefined;
  /** HTTP CONNECT proxy: --proxy, else ROLLCALL_AGENT_PROXY, else the one given at enrollment (identity.json). */
  readonly proxy: ProxyConfig | undefined;
  /** Test-only: synthetic outbox load from ROLLCALL_AGENT_TEST_EVENTS=TOTAL@PER_SECOND. */
  readonly syntheticEvents: { readonly total: number; readonly perSec: number } | undefined;
}

/** Parses a proxy flag or variable; undefined when not given. */
export function resolveProxy(flag: string | undefined, env: Env): ProxyConfig | undefined {
  const text = flag ?? env.ROLLCALL_AGENT_PROXY;
  return text === undefined || text === '' ? undefined : parseProxyUrl(text);
}

type Env = Readonly<Record<string, string | undefined>>;

/** The default state directory: /var/lib/rollcall-agent for root, else under the user's home. */
export function defaultStateDir(env: Env): string {
  if (env.ROLLCALL_AGENT_STATE_DIR) return path.resolve(env.ROLLCALL_AGENT_STATE_DIR);
  if (typeof process.getuid === 'function' && process.getuid() === 0) return '/var/lib/rollcall-agent';
  return path.join(os.homedir(), '.local', 'state', 'rollcall-agent');
}

/** Resolves the settings every command shares. */
export function resolveCommon(flags: { 'state-dir'?: string; 'log-level'?: string }, env: Env): AgentCommonConfig {
  const logLevel = flags['log-level'] ?? env.ROLLCALL_AGENT_LOG_LEVEL ?? 'info';
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(logLevel)) {
    throw new RollcallError('USAGE', `log level "${logLevel}" is not one of fatal, error, warn, info, debug, trace, silent`);
  }
  return Object.freeze({
    stateDir: flags['state-dir'] ? path.resolve(flags['state-dir']) : defaultStateDir(env),
    logLevel,
    fingerprintSalt: env.ROLLCALL_AGENT_FINGERPRINT_SALT ?? '',
  });
}

/** Resolves `run` settings, listing every problem at once. */
export function resolveRunConfig(
  flags: {
    'state-dir'?: string;
    'log-level'?: string;
    'backoff-base'?: string;
    'backoff-cap'?: string;
    'connect-timeout'?: string;
    'ack-timeout'?: string;
    interval?: string;
    proxy?: string;
  },
  env: Env,
): AgentRunConfig {
  const problems: string[] = [];
  const duration = (name: string, value: string | undefined, fallback: number): number => {
    if (value === undefined) return fallback;
    try {
      return parseDuration(value);
    } catch (err) {
      problems.push(`--${name}: ${(err as Error).message}`);
      return fallback;
    }
  };
  const common = resolveCommon(flags, env);
  const baseMs = duration('backoff-base', flags['backoff-base'] ?? env.ROLLCALL_AGENT_BACKOFF_BASE, DEFAULT_BACKOFF.baseMs);
  const capMs = duration('backoff-cap', flags['backoff-cap'] ?? env.ROLLCALL_AGENT_BACKOFF_CAP, DEFAULT_BACKOFF.capMs);
  if (capMs < baseMs) problems.push('--backoff-cap must not be smaller than --backoff-base');
  const interval = flags.interval === undefined ? undefined : duration('interval', flags.interval, 60_000) / 1000;
  if (interval !== undefined && !Number.isInteger(interval)) problems.push('--interval must be whole seconds');
  let proxy: ProxyConfig | undefined;
  try {
    proxy = resolveProxy(flags.proxy, env);
  } catch (err) {
    problems.push(`--proxy: ${(err as Error).message}`);
  }
  let syntheticEvents: AgentRunConfig['syntheticEvents'];
  const load = env.ROLLCALL_AGENT_TEST_EVENTS;
  if (load) {
    const m = /^(\d{1,7})@(\d{1,6})$/.exec(load);
    if (m) syntheticEvents = { total: Number(m[1]), perSec: Math.max(1, Number(m[2])) };
    else problems.push('ROLLCALL_AGENT_TEST_EVENTS must be TOTAL@PER_SECOND, e.g. 3000@500');
  }
  const config: AgentRunConfig = {
    ...common,
    proxy,
    syntheticEvents,
    backoff: Object.freeze({ baseMs, capMs }),
    connectTimeoutMs: duration('connect-timeout', flags['connect-timeout'], 15_000),
    ackTimeoutMs: duration('ack-timeout', flags['ack-timeout'], 30_000),
    intervalOverrideSec: interval,
  };
  if (problems.length > 0) throw new RollcallError('USAGE', `invalid options:\n  - ${problems.join('\n  - ')}`);
  return Object.freeze(config);
}
