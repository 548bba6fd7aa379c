import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it, onTestFailed } from 'vitest';
import { spkiPin } from '../../common/pki.js';
import { Harness } from '../support/harness.js';
import { assertBuilt, eventually, freePort, Processes, ROLLCALL, ROLLCALL_AGENT, type Proc } from './processes.js';

/** The server's exit code when it cannot bind its ports (docs/errors.md). */
const CANNOT_START = 8;
/** The agent's exit code when the server refused it for good (docs/errors.md). */
const REFUSED_FOR_GOOD = 10;

interface DeviceRow {
  id: string;
  status: string;
  connected: boolean;
  lastSeq: number;
  checkins: number;
  groupPath: string;
}

interface AgentStatusJson {
  running: boolean;
  deviceId: string;
  status: { state: string; lastAckedSeq: number; lastError: { class: string } | null } | null;
}

const h = new Harness();
const procs = new Processes();
let dataDir = '';
let ports = { agent: 0, console: 0 };
let server: Proc | undefined;
const agents: { id: string; stateDir: string; proc?: Proc }[] = [];

/** Starts `rollcall server` on the data dir; with no ports given, picks free ones (again if taken). */
async function startServer(fixed?: { agent: number; console: number }): Promise<void> {
  for (let attempt = 1; ; attempt += 1) {
    const p = fixed ?? { agent: await freePort(), console: await freePort() };
    if (p.agent === p.console) continue;
    await fs.rm(path.join(dataDir, 'cli.json'), { force: true });
    const proc = procs.start(`server#${attempt}`, ROLLCALL, [
      'server',
      '--data-dir',
      dataDir,
      '--agent-port',
      String(p.agent),
      '--console-port',
      String(p.console),
      '--listen-host',
      '127.0.0.1',
      '--interval',
      '2',
    ]);
    const ready = await eventually(
      async () => {
        if (!proc.running) return 'exited';
        if (!existsSync(path.join(dataDir, 'cli.json'))) return undefined;
        return (await procs.run(ROLLCALL, ['devices', '--json', '--data-dir', dataDir])).code === 0 ? 'ready' : undefined;
      },
      'the server to answer on its console port',
      30_000,
    );
    if (ready === 'ready') {
      server = proc;
      ports = p;
      return;
    }
    const exit = await proc.waitExit(5000);
    if (exit.code !== CANNOT_START || attempt >= 5) throw new Error(`the server did not start\n${proc.tail()}`);
    if (fixed) await new Promise((r) => setTimeout(r, 200 * attempt)); // the port is briefly taken; retry the same one
  }
}

/** Stops the server with SIGTERM and expects a clean exit. */
async function stopServer(): Promise<void> {
  server!.signal('SIGTERM');
  expect(await server!.waitExit(15_000)).toEqual({ code: 0, signal: null });
}

async function admin(args: string[]): Promise<string> {
  const r = await procs.run(ROLLCALL, [...args, '--data-dir', dataDir]);
  if (r.code !== 0) throw new Error(`rollcall ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

async function devices(): Promise<Map<string, DeviceRow>> {
  const { devices: list } = JSON.parse(await admin(['devices', '--json'])) as { devices: DeviceRow[] };
  return new Map(list.map((d) => [d.id, d]));
}

async function agentStatus(stateDir: string): Promise<AgentStatusJson> {
  const r = await procs.run(ROLLCALL_AGENT, ['status', '--json', '--state-dir', stateDir]);
  if (r.code !== 0) throw new Error(`rollcall-agent status exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as AgentStatusJson;
}

/** Waits until every listed device satisfies `ok`; returns the last listing. */
function devicesWhere(ids: string[], ok: (d: DeviceRow) => boolean, what: string, timeoutMs = 30_000): Promise<Map<string, DeviceRow>> {
  return eventually(
    async () => {
      const all = await devices();
      return ids.every((id) => all.has(id) && ok(all.get(id)!)) ? all : undefined;
    },
    what,
    timeoutMs,
    300,
  );
}

function startAgent(i: number): Proc {
  const a = agents[i]!;
  a.proc = procs.start(`agent${i + 1}`, ROLLCALL_AGENT, ['run', '--state-dir', a.stateDir, '--backoff-base', '100ms', '--backoff-cap', '1s'], {
    ROLLCALL_AGENT_FINGERPRINT_SALT: `e2e-agent-${i + 1}`,
  });
  return a.proc;
}

beforeAll(async () => {
  assertBuilt();
  dataDir = await h.tempDir('rollcall-e2e-data-');
  await startServer();
});

beforeEach(() => {
  onTestFailed(() => {
    process.stderr.write(`\nprocess output at failure:\n${procs.report()}\n`);
  });
});

afterAll(async () => {
  await procs.killAll();
  await h.cleanup();
});

describe('the whole system with real processes', { timeout: 120_000 }, () => {
  it('enrolls two agents with the printed pin and token and shows both online', async () => {
    await admin(['groups', 'create', 'Customers/E2E']);
    const token = JSON.parse(await admin(['token', 'create', '--group', 'Customers/E2E', '--uses', '2', '--json'])) as { token: string; agentCommand: string };
    const pin = /--ca-pin (sha256:[0-9a-f]{64})/.exec(token.agentCommand)?.[1];
    expect(pin).toBe(spkiPin(await fs.readFile(path.join(dataDir, 'pki', 'ca.crt'), 'utf8')));
    expect(token.agentCommand).toContain(`:${ports.agent} `);

    for (let i = 0; i < 2; i += 1) {
      const stateDir = path.join(await h.tempDir('rollcall-e2e-agent-'), 'state');
      const r = await procs.run(
        ROLLCALL_AGENT,
        ['enroll', '--server', `127.0.0.1:${ports.agent}`, '--ca-pin', pin!, '--token', token.token, '--state-dir', stateDir, '--json'],
        { ROLLCALL_AGENT_FINGERPRINT_SALT: `e2e-agent-${i + 1}` },
      );
      expect(r.code, r.stderr).toBe(0);
      agents.push({ id: (JSON.parse(r.stdout) as { deviceId: string }).deviceId, stateDir });
    }
    expect(new Set(agents.map((a) => a.id)).size).toBe(2);

    startAgent(0);
    startAgent(1);
    const seen = await devicesWhere(
      agents.map((a) => a.id),
      (d) => d.status === 'online' && d.lastSeq >= 1,
      'both agents online with a check-in',
    );
    for (const a of agents) expect(seen.get(a.id)).toMatchObject({ groupPath: 'All/Customers/E2E', connected: true });
  });

  it('brings both agents back by themselves after the server restarts on the same data and ports', async () => {
    const ids = agents.map((a) => a.id);
    const before = await devices();
    await stopServer();
    for (const a of agents) {
      const down = await eventually(
        async () => {
          const st = await agentStatus(a.stateDir);
          return st.status?.state === 'backoff' && st.status.lastError?.class === 'REFUSED' ? st : undefined;
        },
        `${a.id} to report backoff after refused connections`,
        15_000,
      );
      expect(down.running).toBe(true);
    }

    await startServer(ports);
    const after = await devicesWhere(ids, (d) => d.status === 'online' && d.lastSeq > before.get(d.id)!.lastSeq, 'both agents online again with new check-ins');
    for (const id of ids) {
      expect(after.get(id)!.checkins).toBe(after.get(id)!.lastSeq); // every sequence number counted once, none reused
    }
    for (const a of agents) {
      const st = await eventually(
        async () => {
          const s = await agentStatus(a.stateDir);
          return s.status?.state === 'connected' ? s : undefined;
        },
        `${a.id} to report connected`,
        10_000,
      );
      expect(st).toMatchObject({ running: true, deviceId: a.id });
      expect(st.status!.lastAckedSeq).toBeGreaterThan(before.get(a.id)!.lastSeq);
      expect(a.proc!.running).toBe(true);
    }
  });

  it('makes a revoked agent exit with code 10 while the other keeps checking in', async () => {
    const [revoked, kept] = agents as [(typeof agents)[0], (typeof agents)[0]];
    await admin(['devices', 'revoke', revoked.id]);
    expect(await revoked.proc!.waitExit(15_000)).toEqual({ code: REFUSED_FOR_GOOD, signal: null });
    expect((await agentStatus(revoked.stateDir)).status).toMatchObject({ state: 'refused' });
    expect(existsSync(path.join(revoked.stateDir, 'agent.pid'))).toBe(false); // the lock was released

    const at = (await devices()).get(kept.id)!.lastSeq;
    const later = await devicesWhere([kept.id], (d) => d.lastSeq >= at + 2, 'the other agent to check in twice more');
    expect(later.get(kept.id)).toMatchObject({ status: 'online', connected: true });
    expect(later.get(revoked.id)).toMatchObject({ status: 'revoked', connected: false });
    expect(kept.proc!.running).toBe(true);
  });

  it('stops an agent cleanly on SIGTERM, after which the server shows it offline', async () => {
    const kept = agents[1]!;
    kept.proc!.signal('SIGTERM');
    expect(await kept.proc!.waitExit(15_000)).toEqual({ code: 0, signal: null });
    const seen = await devicesWhere([kept.id], (d) => !d.connected, 'the server to see the agent gone', 10_000);
    expect(seen.get(kept.id)!.status).toBe('offline');
    expect(await agentStatus(kept.stateDir)).toMatchObject({ running: false, status: { state: 'stopped' } });
    expect(existsSync(path.join(kept.stateDir, 'agent.pid'))).toBe(false);
    await stopServer();
  });
});
