/**
 * The outbox's promise, end to end with real processes: a few thousand
 * events, the agent and the server killed with SIGKILL at seeded random
 * points, both restarted; afterwards the server holds every event exactly
 * once and the agent's outbox is empty.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it, onTestFailed } from 'vitest';
import { openDatabase } from '../../server/storage/db.js';
import { Harness } from '../support/harness.js';
import { assertBuilt, eventually, freePort, Processes, readAgentStatus, ROLLCALL_AGENT, ServerFixture, type Proc } from './processes.js';

const TOTAL = 3000;
const KILLS = 6;

const h = new Harness();
const procs = new Processes();
afterAll(async () => {
  await procs.killAll();
  await h.cleanup();
});

/** A small seeded PRNG (mulberry32): the same kill points on every run. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface StatusJson {
  state: string;
  outbox: { pending: number; lastSeq: number; dropped: number } | null;
}

describe('the durable outbox under kill -9', { timeout: 120_000 }, () => {
  it('delivers every one of a few thousand events exactly once while the agent and the server are killed at random points', async () => {
    assertBuilt();
    const dataDir = await h.tempDir('rollcall-kill-data-');
    const stateDir = path.join(await h.tempDir('rollcall-kill-agent-'), 'state');
    onTestFailed(async () => {
      const last = await fs.readFile(path.join(stateDir, 'status.json'), 'utf8').catch(() => 'none');
      process.stderr.write(`\nprocess output at failure:\n${procs.report()}\nagent status: ${last}\n`);
    });
    const ports = { agent: await freePort(), console: await freePort() };
    const fixture = new ServerFixture(procs, dataDir, ports);
    let agent: Proc | undefined;

    const startServer = (): Promise<Proc> => fixture.start(5);
    const startAgent = (): void => {
      agent = procs.start(`agent#${procs.all.length}`, ROLLCALL_AGENT, ['run', '--state-dir', stateDir, '--backoff-base', '100ms', '--backoff-cap', '400ms', '--interval', '1s', '--log-level', 'warn'], {
        ROLLCALL_AGENT_TEST_EVENTS: `${TOTAL}@800`,
      });
    };
    const status = (): Promise<StatusJson | undefined> => readAgentStatus<StatusJson>(stateDir);

    await startServer();
    const deviceId = await fixture.enroll('Customers/Kill', stateDir);
    startAgent();

    // Kill points: when the agent has numbered this many events; who is killed: seeded, at least two of each.
    const random = prng(20261121);
    const points = Array.from({ length: KILLS }, () => Math.floor(200 + random() * (TOTAL - 600))).sort((a, b) => a - b);
    const victims = points.map((_, i) => (i < 2 ? (['agent', 'server'] as const)[i]! : random() < 0.5 ? 'agent' : 'server'));
    for (let i = 0; i < KILLS; i += 1) {
      await eventually(async () => ((await status())?.outbox?.lastSeq ?? 0) >= points[i]! ? true : undefined, `the agent to number ${points[i]} events`, 30_000, 20);
      if (victims[i] === 'agent') {
        agent!.signal('SIGKILL');
        await agent!.waitExit(5000);
        startAgent();
      } else {
        fixture.server!.signal('SIGKILL');
        await fixture.server!.waitExit(5000);
        await startServer();
      }
    }

    const final = await eventually(
      async () => {
        const s = await status();
        return s?.state === 'connected' && s.outbox && s.outbox.lastSeq >= TOTAL && s.outbox.pending === 0 ? s : undefined;
      },
      'the outbox to be empty after the last kill',
      45_000,
      100,
    );
    agent!.signal('SIGTERM');
    expect(await agent!.waitExit(10_000)).toEqual({ code: 0, signal: null });
    fixture.server!.signal('SIGTERM');
    expect(await fixture.server!.waitExit(15_000)).toEqual({ code: 0, signal: null });

    const lastSeq = ((await status())?.outbox?.lastSeq ?? 0);
    expect(lastSeq).toBeGreaterThanOrEqual(final.outbox!.lastSeq);
    const db = await openDatabase(path.join(dataDir, 'rollcall.db'));
    h.defer(() => db.close());
    const events = await db.get<{ n: number; lo: number; hi: number; distinct_seqs: number }>(
      'SELECT count(*) AS n, min(seq) AS lo, max(seq) AS hi, count(DISTINCT seq) AS distinct_seqs FROM agent_events WHERE device_id = ?',
      [deviceId],
    );
    // Every numbered event, once: seqs 1..lastSeq with no gap and no extra row.
    expect(events).toEqual({ n: lastSeq, lo: 1, hi: lastSeq, distinct_seqs: lastSeq });
    const kinds = await db.all<{ kind: string; n: number }>('SELECT kind, count(*) AS n FROM agent_events WHERE device_id = ? GROUP BY kind', [deviceId]);
    const byKind = Object.fromEntries(kinds.map((k) => [k.kind, k.n]));
    expect(byKind.synthetic).toBeGreaterThan(TOTAL - 200);
    expect(byKind.dropped).toBeUndefined();
    expect(final.outbox!.dropped).toBe(0);
    // Side effects exactly once too: one health observation per stored failed attempt.
    const observed = await db.get<{ n: number }>("SELECT count(*) AS n FROM observations WHERE source = 'failed_attempt' AND device_id = ?", [deviceId]);
    expect(observed!.n).toBe(byKind.attempt ?? 0);
    // Check-ins were counted once each across the kills.
    const device = await db.get<{ last_seq: number; checkin_count: number }>('SELECT last_seq, checkin_count FROM devices WHERE id = ?', [deviceId]);
    expect(device!.checkin_count).toBe(device!.last_seq);
    process.stdout.write(`outbox kill test: ${lastSeq} events (${JSON.stringify(byKind)}), kills ${victims.join(',')} at ${points.join(',')}\n`);
  });
});
