import fs from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseDuration } from '../../common/duration.js';
import { spkiPin } from '../../common/pki.js';
import { PROTOCOL_VERSION, ROLLCALL_VERSION } from '../../common/version.js';
import { captureLogger, Harness, readTestCa, waitFor, type TestServer } from '../../test/support/harness.js';
import { AGENT_EXIT, agentMain } from '../cli.js';
import { resolveRunConfig } from '../config.js';
import { AgentState } from '../state.js';
import { startAgent } from '../supervisor.js';
import { closedPort } from './net-fixtures.js';

const h = new Harness();
afterEach(() => h.cleanup());

/** Runs the agent CLI in this process with captured output and a given environment. */
async function cli(argv: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await agentMain(argv, env, { out: (t) => out.push(t), err: (t) => err.push(t) });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

async function freshStateDir(): Promise<string> {
  return path.join(await h.tempDir(), 'state');
}

/** Enroll arguments for a server, with any flag replaced. */
function enrollArgs(s: TestServer, stateDir: string, over: { server?: string; pin?: string; token?: string } = {}): string[] {
  const args = ['enroll', '--server', over.server ?? s.agentAddress, '--ca-pin', over.pin ?? s.server.pki.caPin, '--state-dir', stateDir];
  return over.token === undefined ? args : [...args, '--token', over.token];
}

const STACK_LINE = /^\s+at /m;

/** The fields `status --json` promises (docs/api.md); only additions are allowed. */
const STATUS_JSON_KEYS = ['deviceId', 'enrolled', 'running', 'servers', 'status'];
const STATUS_FILE_KEYS = [
  'certificate',
  'connectedSince',
  'deviceId',
  'failedAttempts',
  'group',
  'intervalSec',
  'lastAckedSeq',
  'lastCheckinAt',
  'lastError',
  'lastSuccessAt',
  'nextAttemptAt',
  'outbox',
  'path',
  'pid',
  'server',
  'since',
  'state',
  'updatedAt',
];

describe('rollcall-agent basics', () => {
  it('names the agent and protocol versions with --version', async () => {
    const r = await cli(['--version']);
    expect(r).toEqual({ code: AGENT_EXIT.OK, out: `rollcall-agent ${ROLLCALL_VERSION} (protocol ${PROTOCOL_VERSION})`, err: '' });
  });

  it('prints the usage and exits 2 without a command', async () => {
    const r = await cli([]);
    expect(r.code).toBe(AGENT_EXIT.USAGE);
    expect(`${r.out}\n${r.err}`).toMatch(/Usage:[\s\S]*rollcall-agent enroll[\s\S]*rollcall-agent run[\s\S]*rollcall-agent status/);
  });

  it('prints the usage with the exit codes and exits 0 with --help', async () => {
    const r = await cli(['status', '--help']);
    expect(r.code).toBe(AGENT_EXIT.OK);
    expect(r.out).toContain('Exit codes:');
  });

  it('answers an unknown flag with exit 2 and one clear sentence, and no stack trace', async () => {
    const r = await cli(['enroll', '--bogus']);
    expect(r.code).toBe(AGENT_EXIT.USAGE);
    expect(r.out).toBe('');
    const lines = r.err.split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^error: /);
    expect(lines[0]).toContain('--bogus');
    const sentence = lines[0]!.replace(/^error: /, '').replace(/ \[USAGE\]$/, '');
    expect(sentence).not.toMatch(/[.!?] /); // a single sentence
    expect(r.err).not.toMatch(STACK_LINE);
  });

  it('adds the stack trace to an error only with --debug', async () => {
    const r = await cli(['enroll', '--bogus', '--debug']);
    expect(r.code).toBe(AGENT_EXIT.USAGE);
    expect(r.err).toMatch(STACK_LINE);
  });

  it('answers an unknown command with exit 2 and names it', async () => {
    const r = await cli(['frobnicate']);
    expect(r.code).toBe(AGENT_EXIT.USAGE);
    expect(r.err).toContain('"frobnicate"');
    expect(r.err).not.toMatch(STACK_LINE);
  });

  it('lists every missing enroll flag at once', async () => {
    const r = await cli(['enroll']);
    expect(r.code).toBe(AGENT_EXIT.USAGE);
    expect(r.err).toMatch(/--server.*--ca-pin.*--token/);
  });

  it('accepts millisecond durations for the backoff flags', () => {
    expect(parseDuration('100ms')).toBe(100);
    expect(parseDuration('1500ms')).toBe(1500);
    expect(() => parseDuration('0ms')).toThrow(/greater than zero/);
    expect(() => parseDuration('10 ms')).toThrow(/500ms/);
    expect(resolveRunConfig({ 'backoff-base': '100ms', 'backoff-cap': '1s' }, {}).backoff).toEqual({ baseMs: 100, capMs: 1000 });
  });

  it('refuses bad run options with exit 2, listing every problem', async () => {
    const r = await cli(['run', '--state-dir', await freshStateDir(), '--backoff-base', 'soon', '--backoff-cap', '5x']);
    expect(r.code).toBe(AGENT_EXIT.USAGE);
    expect(r.err).toContain('--backoff-base');
    expect(r.err).toContain('--backoff-cap');
  });
});

describe('rollcall-agent status and run on a state directory', () => {
  it('exits 6 with NOT_ENROLLED for status on an empty state directory', async () => {
    const dir = await h.tempDir();
    const r = await cli(['status', '--state-dir', dir]);
    expect(r.code).toBe(AGENT_EXIT.STATE);
    expect(r.err).toContain('[NOT_ENROLLED]');
    expect(r.err).toContain('rollcall-agent enroll');
  });

  it('exits 6 with NOT_ENROLLED for run on an empty state directory', async () => {
    const r = await cli(['run', '--state-dir', await freshStateDir()]);
    expect(r.code).toBe(AGENT_EXIT.STATE);
    expect(r.err).toContain('[NOT_ENROLLED]');
  });

  it('takes the state directory from ROLLCALL_AGENT_STATE_DIR', async () => {
    const dir = await h.tempDir();
    const r = await cli(['status'], { ROLLCALL_AGENT_STATE_DIR: dir });
    expect(r.code).toBe(AGENT_EXIT.STATE);
    expect(r.err).toContain(dir);
  });
});

describe('rollcall-agent enroll', () => {
  it('exits 4 when the CA pin does not match, and writes nothing', async () => {
    const s = await h.startServer();
    const dir = await freshStateDir();
    const foreignPin = spkiPin((await readTestCa('foreign-ca')).certPem);
    const r = await cli(enrollArgs(s, dir, { pin: foreignPin, token: await s.enrollmentToken() }));
    expect(r.code).toBe(AGENT_EXIT.SERVER_UNTRUSTED);
    expect(r.err).toContain('[CA_PIN_MISMATCH]');
    await expect(fs.readdir(dir)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('exits 2 on a malformed pin', async () => {
    const s = await h.startServer();
    const r = await cli(enrollArgs(s, await freshStateDir(), { pin: 'sha256:nothex', token: 'rce_x' }));
    expect(r.code).toBe(AGENT_EXIT.USAGE);
    expect(r.err).toContain('[PIN_MALFORMED]');
  });

  it('exits 3 when the server does not know the token', async () => {
    const s = await h.startServer();
    const r = await cli(enrollArgs(s, await freshStateDir(), { token: `rce_${'Q'.repeat(43)}` }));
    expect(r.code).toBe(AGENT_EXIT.ENROLL_REFUSED);
    expect(r.err).toContain('[ENROLL_TOKEN_UNKNOWN]');
  });

  it('exits 5 when nothing listens on the server port', async () => {
    const s = await h.startServer();
    const r = await cli(enrollArgs(s, await freshStateDir(), { server: `127.0.0.1:${await closedPort()}`, token: await s.enrollmentToken() }));
    expect(r.code).toBe(AGENT_EXIT.SERVER_UNREACHABLE);
    expect(r.err).toContain('ECONNREFUSED');
    expect(r.err).not.toMatch(STACK_LINE);
  });

  it('enrolls with the token from the environment, then refuses a second enrollment with exit 6', async () => {
    const s = await h.startServer();
    const dir = await freshStateDir();
    const token = await s.enrollmentToken('Customers/Cli');
    const r = await cli([...enrollArgs(s, dir), '--json'], { ROLLCALL_AGENT_TOKEN: token });
    expect(r.code).toBe(AGENT_EXIT.OK);
    const answer = JSON.parse(r.out) as Record<string, unknown>;
    expect(Object.keys(answer).sort()).toEqual(['deviceId', 'group', 'servers', 'stateDir']);
    expect(answer).toMatchObject({ group: { path: 'All/Customers/Cli' }, servers: [s.agentAddress], stateDir: dir });
    expect(await s.server.storage.devices.get(answer.deviceId as string)).toBeDefined();

    const again = await cli(enrollArgs(s, dir), { ROLLCALL_AGENT_TOKEN: await s.enrollmentToken() });
    expect(again.code).toBe(AGENT_EXIT.STATE);
    expect(again.err).toContain('[ALREADY_ENROLLED]');
  });

  it('exits 6 with AGENT_RUNNING when another live process holds the lock', async () => {
    const s = await h.startServer();
    const dir = await freshStateDir();
    expect((await cli(enrollArgs(s, dir, { token: await s.enrollmentToken() }))).code).toBe(AGENT_EXIT.OK);
    await fs.writeFile(new AgentState(dir).file('lock'), String(process.pid));
    const r = await cli(['run', '--state-dir', dir]);
    expect(r.code).toBe(AGENT_EXIT.STATE);
    expect(r.err).toContain('[AGENT_RUNNING]');
    expect(r.err).toContain(String(process.pid));
  });
});

describe('rollcall-agent status --json', () => {
  it('keeps a stable shape before the first run, while running, and after stopping', async () => {
    const s = await h.startServer();
    const dir = await freshStateDir();
    const enrolled = await cli([...enrollArgs(s, dir, { token: await s.enrollmentToken() }), '--json']);
    const { deviceId } = JSON.parse(enrolled.out) as { deviceId: string };

    const before = await cli(['status', '--state-dir', dir, '--json']);
    expect(before.code).toBe(AGENT_EXIT.OK);
    expect(JSON.parse(before.out)).toEqual({ running: false, enrolled: true, deviceId, servers: [s.agentAddress], status: null });
    const human = await cli(['status', '--state-dir', dir]);
    expect(human.out).toContain('never run');

    const agent = await startAgent({
      state: new AgentState(dir),
      fingerprint: 'c'.repeat(64),
      backoff: { baseMs: 50, capMs: 500 },
      connectTimeoutMs: 2000,
      ackTimeoutMs: 3000,
      intervalOverrideSec: 1,
      log: captureLogger().log,
    });
    h.defer(() => agent.stop());
    await waitFor(() => agent.status.status.lastAckedSeq >= 1, 'a first ack', 10_000);
    await agent.status.flushed();

    const during = JSON.parse((await cli(['status', '--state-dir', dir, '--json'])).out) as { running: boolean; status: Record<string, unknown> };
    expect(Object.keys(during).sort()).toEqual(STATUS_JSON_KEYS);
    expect(Object.keys(during.status).sort()).toEqual(STATUS_FILE_KEYS);
    expect(during).toMatchObject({ running: true, status: { state: 'connected', deviceId, server: s.agentAddress, pid: process.pid } });
    expect(during.status.lastAckedSeq).toBeGreaterThanOrEqual(1);

    await agent.stop();
    const after = JSON.parse((await cli(['status', '--state-dir', dir, '--json'])).out) as { running: boolean; status: Record<string, unknown> };
    expect(Object.keys(after.status).sort()).toEqual(STATUS_FILE_KEYS);
    expect(after).toMatchObject({ running: false, status: { state: 'stopped' } });
    expect((await cli(['status', '--state-dir', dir])).out).toMatch(/state:\s+stopped \(agent not running\)/);
  });
});
