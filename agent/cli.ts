/**
 * `rollcall-agent`: enroll, run, status. Exit codes are listed in
 * docs/errors.md (and in `--help`).
 */
import fs from 'node:fs/promises';
import { pino, type Level } from 'pino';
import { formatTable, parseCommandArgs, processIo, runCli, usageError, type CliIo } from '../common/cli-support.js';
import { RollcallError } from '../common/errors.js';
import { parseProxyUrl } from '../common/http-proxy.js';
import { PROTOCOL_VERSION, ROLLCALL_VERSION } from '../common/version.js';
import { resolveCommon, resolveProxy, resolveRunConfig } from './config.js';
import { repinAgent } from './repin.js';
import { diagnoseCommand } from './diagnose.js';
import { enrollAgent } from './enroll.js';
import { classifyError } from './errors.js';
import { hardwareFingerprint } from './fingerprint.js';
import { RotatingLogFile } from './log-file.js';
import { AgentState } from './state.js';
import { formatStatus, type AgentStatus } from './status.js';
import { startAgent } from './supervisor.js';

/** Documented exit codes of rollcall-agent. */
export const AGENT_EXIT = {
  OK: 0,
  ERROR: 1,
  USAGE: 2,
  ENROLL_REFUSED: 3,
  SERVER_UNTRUSTED: 4,
  SERVER_UNREACHABLE: 5,
  STATE: 6,
  DIAGNOSE_FAILED: 7,
  REFUSED_FOR_GOOD: 10,
} as const;

const HELP = `rollcall-agent ${ROLLCALL_VERSION} (protocol ${PROTOCOL_VERSION})

Usage:
  rollcall-agent enroll --server HOST:PORT [--server HOST:PORT …] --ca-pin sha256:HEX --token TOKEN
                        [--proxy http://[USER:PASS@]HOST:PORT] [--state-dir DIR] [--config FILE] [--force] [--json]
  rollcall-agent run    [--state-dir DIR] [--config FILE] [--proxy URL] [--backoff-cap 5m] [--backoff-base 1s]
                        [--log-level info] [--log-file FILE|none] [--log-max-bytes 1MiB] [--log-files 3]
  rollcall-agent status [--state-dir DIR] [--json]
  rollcall-agent repin --ca-pin sha256:HEX [--state-dir DIR] [--proxy URL] [--json]
      after the server rotated its CA while this agent was offline: trust the new CA by its pin
  rollcall-agent diagnose [--state-dir DIR] [--timeout 5s] [--json]
      checks every server: DNS, TCP, TLS, identification, the check-in channel round trip
  rollcall-agent --version

The token may also come from ROLLCALL_AGENT_TOKEN (keeps it out of the process list).
--config (or ROLLCALL_AGENT_CONFIG) names a JSON file such as installers write:
{ "proxy": "http://[user:pass@]host:port" }.
The proxy: --proxy, else ROLLCALL_AGENT_PROXY, else the config file's, else the one given at
enrollment (kept for run). HTTPS_PROXY is not used.
run logs JSON lines to stdout and to <state-dir>/agent.log, rotated at 1 MiB, 3 files kept.
State directory: --state-dir, else ROLLCALL_AGENT_STATE_DIR, else /var/lib/rollcall-agent (root)
or ~/.local/state/rollcall-agent.

Exit codes: 0 ok; 1 unexpected error; 2 usage; 3 enrollment refused; 4 server not trusted
(CA pin or TLS); 5 server unreachable; 6 state directory problem (not enrolled, already
enrolled, another agent running); 7 diagnose: some server failed; 10 refused for good (revoked, unknown or expired certificate).
Add --debug for stack traces.`;

function exitCodeOf(err: unknown): number {
  if (!(err instanceof RollcallError)) {
    const f = classifyError(err);
    if (f.class === 'TLS') return AGENT_EXIT.SERVER_UNTRUSTED;
    if (f.class === 'DNS' || f.class === 'REFUSED' || f.class === 'TIMEOUT') return AGENT_EXIT.SERVER_UNREACHABLE;
    return AGENT_EXIT.ERROR;
  }
  const c = err.code;
  if (c === 'USAGE' || c === 'PIN_MALFORMED' || c === 'ADDRESS_INVALID' || c === 'DURATION_INVALID' || c === 'PROXY_INVALID') return AGENT_EXIT.USAGE;
  if (c === 'PROXY_UNREACHABLE' || c === 'PROXY_REFUSED' || c === 'PROXY_AUTH_REQUIRED' || c === 'PROXY_BAD_RESPONSE') return AGENT_EXIT.SERVER_UNREACHABLE;
  if (c.startsWith('ENROLL_TOKEN') || c.startsWith('CSR_') || c === 'RATE_LIMITED' || c === 'BAD_REQUEST') return AGENT_EXIT.ENROLL_REFUSED;
  if (c.startsWith('TLS_') || c === 'CA_PIN_MISMATCH' || c === 'ENROLL_BAD_RESPONSE') return AGENT_EXIT.SERVER_UNTRUSTED;
  if (c === 'TIMEOUT') return AGENT_EXIT.SERVER_UNREACHABLE;
  if (c === 'NOT_ENROLLED' || c === 'ALREADY_ENROLLED' || c === 'STATE_UNREADABLE' || c === 'AGENT_RUNNING') return AGENT_EXIT.STATE;
  return AGENT_EXIT.ERROR;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function takeLock(state: AgentState): Promise<() => Promise<void>> {
  const file = state.file('lock');
  for (let i = 0; i < 2; i += 1) {
    try {
      await fs.writeFile(file, String(process.pid), { flag: 'wx', mode: 0o600 });
      return () => fs.rm(file, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number(await fs.readFile(file, 'utf8'));
      if (Number.isInteger(pid) && pid > 0 && isAlive(pid)) {
        throw new RollcallError('AGENT_RUNNING', `another agent (pid ${pid}) is running with ${state.dir}`);
      }
      await fs.rm(file, { force: true });
    }
  }
  throw new RollcallError('AGENT_RUNNING', `cannot take the lock ${file}`);
}

async function enrollCommand(args: string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<number> {
  const { values } = parseCommandArgs(args, {
    server: { type: 'string', multiple: true },
    'ca-pin': { type: 'string' },
    token: { type: 'string' },
    'state-dir': { type: 'string' },
    config: { type: 'string' },
    force: { type: 'boolean' },
    json: { type: 'boolean' },
    proxy: { type: 'string' },
    debug: { type: 'boolean' },
  });
  const token = values.token ?? env.ROLLCALL_AGENT_TOKEN;
  const missing = [!values.server?.length && '--server', !values['ca-pin'] && '--ca-pin', !token && '--token'].filter(Boolean);
  if (missing.length > 0) throw usageError(`enroll needs ${missing.join(', ')}`);
  const common = resolveCommon(values, env);
  const state = new AgentState(common.stateDir);
  const identity = await enrollAgent({
    servers: values.server!,
    caPin: values['ca-pin']!,
    token: token!,
    state,
    fingerprint: hardwareFingerprint(common.fingerprintSalt),
    force: values.force ?? false,
    proxy: values.proxy ?? (env.ROLLCALL_AGENT_PROXY || undefined) ?? common.configProxy ?? undefined,
  });
  if (values.json) io.out(JSON.stringify({ deviceId: identity.deviceId, group: identity.group, servers: identity.servers, stateDir: state.dir }));
  else io.out(`enrolled as ${identity.deviceId} in group "${identity.group.path}"; state in ${state.dir}\nnext: rollcall-agent run${values['state-dir'] ? ` --state-dir ${state.dir}` : ''}`);
  return AGENT_EXIT.OK;
}

async function runCommand(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const { values } = parseCommandArgs(args, {
    'state-dir': { type: 'string' },
    config: { type: 'string' },
    'log-level': { type: 'string' },
    'log-file': { type: 'string' },
    'log-max-bytes': { type: 'string' },
    'log-files': { type: 'string' },
    'backoff-base': { type: 'string' },
    'backoff-cap': { type: 'string' },
    'connect-timeout': { type: 'string' },
    'ack-timeout': { type: 'string' },
    interval: { type: 'string' },
    proxy: { type: 'string' },
    debug: { type: 'boolean' },
  });
  const config = resolveRunConfig(values, env);
  const state = new AgentState(config.stateDir);
  await state.ensureDir();
  const { identity } = await state.loadCredentials();
  const release = await takeLock(state);
  let file: RotatingLogFile | undefined;
  try {
    // Told once per failing stretch; reported on the next turn, so the report does not re-enter the failing write.
    const onFileError = (err: Error): void => void setImmediate(() => log.error({ file: config.logFile, err: err.message }, 'cannot write the log file; logging to stdout only until it works again'));
    file = config.logFile ? new RotatingLogFile(config.logFile, config.logMaxBytes, config.logFiles, onFileError) : undefined;
    const streams = [{ level: config.logLevel as Level, stream: process.stdout }, ...(file ? [{ level: config.logLevel as Level, stream: file }] : [])];
    const log = pino({ level: config.logLevel, base: { program: 'rollcall-agent' } }, pino.multistream(streams));
    const agent = await startAgent({
      state,
      fingerprint: hardwareFingerprint(config.fingerprintSalt),
      backoff: config.backoff,
      connectTimeoutMs: config.connectTimeoutMs,
      ackTimeoutMs: config.ackTimeoutMs,
      intervalOverrideSec: config.intervalOverrideSec,
      proxy: config.proxy ?? (identity.proxy ? parseProxyUrl(identity.proxy) : undefined),
      syntheticEvents: config.syntheticEvents,
      log,
    });
    const stop = (): void => void agent.stop();
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
    const outcome = await agent.done;
    process.removeListener('SIGTERM', stop);
    process.removeListener('SIGINT', stop);
    if (outcome.kind === 'terminal') {
      log.error({ code: outcome.failure.code, reason: outcome.failure.message }, 'the server refused this agent for good; re-enroll it');
      return AGENT_EXIT.REFUSED_FOR_GOOD;
    }
    return AGENT_EXIT.OK;
  } finally {
    file?.close();
    await release();
  }
}

async function statusCommand(args: string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<number> {
  const { values } = parseCommandArgs(args, { 'state-dir': { type: 'string' }, json: { type: 'boolean' }, debug: { type: 'boolean' } });
  const state = new AgentState(resolveCommon(values, env).stateDir);
  const creds = await state.loadCredentials();
  const status = await state.readStatus<AgentStatus>();
  const running = status !== undefined && status.state !== 'stopped' && status.state !== 'refused' && isAlive(status.pid);
  if (values.json) {
    io.out(JSON.stringify({ running, enrolled: true, deviceId: creds.identity.deviceId, servers: creds.identity.servers, status: status ?? null }));
  } else if (!status) {
    io.out(formatTable(['device', 'servers', 'state'], [[creds.identity.deviceId, creds.identity.servers.join(','), 'never run']]));
  } else {
    io.out(formatStatus(status, running));
  }
  return AGENT_EXIT.OK;
}

async function repinCommand(args: string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<number> {
  const { values } = parseCommandArgs(args, { 'state-dir': { type: 'string' }, 'ca-pin': { type: 'string' }, proxy: { type: 'string' }, json: { type: 'boolean' }, debug: { type: 'boolean' } });
  if (!values['ca-pin']) throw usageError('repin needs --ca-pin (the new pin: rollcall ca on the server shows it)');
  const state = new AgentState(resolveCommon(values, env).stateDir);
  const { identity } = await state.loadCredentials();
  const proxy = resolveProxy(values.proxy, env) ?? (identity.proxy ? parseProxyUrl(identity.proxy) : undefined);
  const result = await repinAgent({ state, caPin: values['ca-pin'], proxy });
  if (values.json) io.out(JSON.stringify(result));
  else io.out(`now trusting the CA ${result.caPin} as presented by ${result.server} (${result.trusted} CA certificate(s) trusted); restart the agent (rollcall-agent run)`);
  return AGENT_EXIT.OK;
}

/** Entry point; returns the exit code. */
export async function agentMain(argv: string[], env: NodeJS.ProcessEnv = process.env, io: CliIo = processIo): Promise<number> {
  const [command, ...rest] = argv;
  const debug = argv.includes('--debug');
  return runCli(
    async () => {
      if (command === '--version' || command === 'version') {
        io.out(`rollcall-agent ${ROLLCALL_VERSION} (protocol ${PROTOCOL_VERSION})`);
        return 0;
      }
      if (command === undefined || command === '--help' || command === 'help' || rest.includes('--help')) {
        io.out(HELP);
        return command === undefined ? AGENT_EXIT.USAGE : 0;
      }
      if (command === 'enroll') return enrollCommand(rest, env, io);
      if (command === 'run') return runCommand(rest, env);
      if (command === 'status') return statusCommand(rest, env, io);
      if (command === 'repin') return repinCommand(rest, env, io);
      if (command === 'diagnose') return (await diagnoseCommand(rest, env, io)) ? AGENT_EXIT.OK : AGENT_EXIT.DIAGNOSE_FAILED;
      throw usageError(`unknown command "${command}"; see rollcall-agent --help`);
    },
    io,
    debug,
    exitCodeOf,
  );
}
