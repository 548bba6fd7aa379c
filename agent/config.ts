/**
 * Agent configuration: flags first, then `ROLLCALL_AGENT_*` environment
 * variables, then defaults. Nothing else in the agent reads process.env.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_BACKOFF, type BackoffPolicy } from '../common/backoff.js';
import { parseDuration } from '../common/duration.js';
import { RollcallError } from '../common/errors.js';
import { parseProxyUrl, type ProxyConfig } from '../common/http-proxy.js';
import { LOG_FILE_DEFAULTS } from './log-file.js';

/** Settings shared by every agent command. */
export interface AgentCommonConfig {
  readonly stateDir: string;
  readonly logLevel: string;
  /** Test seam: makes this process look like other hardware. */
  readonly fingerprintSalt: string;
  /** The HTTP proxy from the config file (`proxy`), `http://[user:pass@]host:port`, or null. */
  readonly configProxy: string | null;
}

/** What the agent's JSON config file (`--config`, ROLLCALL_AGENT_CONFIG) may hold; installers write it. */
export interface AgentConfigFile {
  readonly proxy?: string;
}

/** Reads and checks the config file; a missing file named by the caller is an error. */
export function readConfigFile(file: string): AgentConfigFile {
  let parsed: unknown;
  try {
    parsed = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new RollcallError('USAGE', `cannot read the config file ${file}: ${(err as Error).message}`, { cause: err });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new RollcallError('USAGE', `the config file ${file} must hold a JSON object`);
  const problems: string[] = [];
  for (const key of Object.keys(parsed)) if (key !== 'proxy') problems.push(`unknown key "${key}"`);
  const proxy = (parsed as { proxy?: unknown }).proxy;
  if (proxy !== undefined && (typeof proxy !== 'string' || !/^http:\/\/[^\s/]+:\d+\/?$/.test(proxy))) problems.push('"proxy" must be http://[user:pass@]host:port');
  if (problems.length > 0) throw new RollcallError('USAGE', `the config file ${file}: ${problems.join('; ')}`);
  return parsed as AgentConfigFile;
}

/** Settings of `run`. */
export interface AgentRunConfig extends AgentCommonConfig {
  readonly backoff: BackoffPolicy;
  readonly connectTimeoutMs: number;
  readonly ackTimeoutMs: number;
  readonly intervalOverrideSec: number | undefined;
  /** The rotating log file; null: stdout only. */
  readonly logFile: string | null;
  readonly logMaxBytes: number;
  readonly logFiles: number;
  /**
   * HTTP CONNECT proxy: --proxy, else ROLLCALL_AGENT_PROXY, else the config file's, else the one given at
   * enrollment (identity.json, applied by the caller).
   */
  readonly proxy: ProxyConfig | undefined;
  /** Test-only: synthetic outbox load from ROLLCALL_AGENT_TEST_EVENTS=TOTAL@PER_SECOND. */
  readonly syntheticEvents: { readonly total: number; readonly perSec: number } | undefined;
}

/** Parses the proxy from the flag, else ROLLCALL_AGENT_PROXY, else the config file; undefined when none is given. */
export function resolveProxy(flag: string | undefined, env: Env, configProxy: string | null = null): ProxyConfig | undefined {
  const text = flag ?? (env.ROLLCALL_AGENT_PROXY || undefined) ?? configProxy ?? undefined;
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
export function resolveCommon(flags: { 'state-dir'?: string; 'log-level'?: string; config?: string }, env: Env): AgentCommonConfig {
  const logLevel = flags['log-level'] ?? env.ROLLCALL_AGENT_LOG_LEVEL ?? 'info';
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(logLevel)) {
    throw new RollcallError('USAGE', `log level "${logLevel}" is not one of fatal, error, warn, info, debug, trace, silent`);
  }
  const configFile = flags.config ?? env.ROLLCALL_AGENT_CONFIG;
  const file = configFile ? readConfigFile(path.resolve(configFile)) : {};
  return Object.freeze({
    stateDir: flags['state-dir'] ? path.resolve(flags['state-dir']) : defaultStateDir(env),
    logLevel,
    fingerprintSalt: env.ROLLCALL_AGENT_FINGERPRINT_SALT ?? '',
    configProxy: file.proxy ?? null,
  });
}

function logSettings(
  problems: string[],
  flags: { 'log-file'?: string; 'log-max-bytes'?: string; 'log-files'?: string },
  env: Env,
  stateDir: string,
): Pick<AgentRunConfig, 'logFile' | 'logMaxBytes' | 'logFiles'> {
  const file = flags['log-file'] ?? env.ROLLCALL_AGENT_LOG_FILE;
  const size = flags['log-max-bytes'] ?? String(LOG_FILE_DEFAULTS.maxBytes);
  const m = /^(\d+)(k|ki|kib|m|mi|mib)?$/i.exec(size.trim());
  const unit = m?.[2]?.toLowerCase().startsWith('k') ? 1024 : m?.[2] ? 1024 * 1024 : 1;
  const logMaxBytes = m ? Number(m[1]) * unit : NaN;
  if (!(logMaxBytes >= 64 * 1024 && logMaxBytes <= 1024 ** 3)) problems.push('--log-max-bytes must be from 64KiB to 1024MiB (like 1048576, 512KiB or 1MiB)');
  const files = flags['log-files'] ?? String(LOG_FILE_DEFAULTS.files);
  const logFiles = /^\d+$/.test(files) ? Number(files) : NaN;
  if (!(logFiles >= 1 && logFiles <= 20)) problems.push('--log-files must be a whole number from 1 to 20');
  const logFile = file === 'none' ? null : path.resolve(file ?? path.join(stateDir, 'agent.log'));
  return { logFile, logMaxBytes, logFiles };
}

/** Resolves `run` settings, listing every problem at once. */
export function resolveRunConfig(
  flags: {
    'state-dir'?: string;
    'log-level'?: string;
    config?: string;
    'log-file'?: string;
    'log-max-bytes'?: string;
    'log-files'?: string;
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
    proxy = resolveProxy(flags.proxy, env, common.configProxy);
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
    ...logSettings(problems, flags, env, common.stateDir),
  };
  if (problems.length > 0) throw new RollcallError('USAGE', `invalid options:\n  - ${problems.join('\n  - ')}`);
  return Object.freeze(config);
}
