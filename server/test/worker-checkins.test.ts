import fs from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CloseCode } from '../../common/close-codes.js';
import { Harness, waitFor, type EnrolledAgent, type RawClient, type TestServer } from '../../test/support/harness.js';
import { openDatabase } from '../storage/db.js';
import { WorkerJournal, workerJournalFile } from '../storage/worker-journals.js';

// Agent workers run the compiled worker entry: `npm test` builds dist/ first.
const h = new Harness();
afterEach(() => h.cleanup());

/** Folds only on a worker's exit, on flush and on close: what a test sees in the devices table came from one of those. */
const NO_BACKGROUND_FOLD = 10 * 60_000;

async function clusterServer(workers: number, dataDir?: string): Promise<TestServer> {
  return h.startServer({ agentWorkers: workers }, { dataDir, workerJournalFoldMs: NO_BACKGROUND_FOLD });
}

/** A welcomed raw channel with a check-in helper that waits for the ack. */
async function openChannel(s: TestServer, agent: EnrolledAgent): Promise<{ client: RawClient; welcome: Record<string, unknown>; checkin(seq: number): Promise<void> }> {
  const client = await s.rawClient(agent);
  await client.open();
  client.hello(agent.deviceId);
  const welcome = (await client.waitMessage('welcome')) as unknown as Record<string, unknown>;
  return {
    client,
    welcome,
    checkin: async (seq) => {
      const from = client.messages.length;
      client.send({ type: 'checkin', seq, sentAt: Date.now(), uptimeSec: seq });
      expect(await client.waitMessage('ack', 5000, from)).toEqual({ type: 'ack', seq });
    },
  };
}

/** The device row as stored now, without folding anything. */
async function rowNow(s: TestServer, deviceId: string): Promise<{ lastSeq: number; checkinCount: number }> {
  const d = (await s.server.storage.devices.get(deviceId))!;
  return { lastSeq: d.lastSeq, checkinCount: d.checkinCount };
}

describe('check-ins in the agent workers\' journals', () => {
  it('acks from the worker\'s journal, folds a killed worker\'s acked check-ins, and keeps each counted once over restarts with fewer and more workers', async () => {
    const s = await clusterServer(2);
    const agents = await Promise.all([1, 2, 3, 4, 5, 6].map((n) => s.enrollAgent({ hostname: `j-${n}` })));
    const channels = await Promise.all(agents.map((a) => openChannel(s, a)));
    for (const ch of channels) for (let seq = 1; seq <= 3; seq += 1) await ch.checkin(seq);
    // Acked, yet not in rollcall.db: durable in the workers' own files, which nothing has folded yet.
    for (const a of agents) expect(await rowNow(s, a.deviceId)).toEqual({ lastSeq: 0, checkinCount: 0 });
    const samples = await s.server.agentWorkers!.stats({ gc: false });
    expect(samples.reduce((n, w) => n + w.checkins.checkins, 0)).toBe(18);
    const victim = samples.find((w) => w.openChannels > 0)!;
    process.kill(victim.pid, 'SIGKILL');
    await waitFor(() => s.logs.find((l) => l.msg === 'agent worker died; its agents are disconnected'), 'the death to be logged');
    // Its journal is folded on its exit: every device, the dead worker's too, shows all three.
    await waitFor(async () => {
      for (const a of agents) if ((await rowNow(s, a.deviceId)).lastSeq !== 3) return undefined;
      return true;
    }, 'the killed worker\'s journal to be folded');
    for (const a of agents) expect(await rowNow(s, a.deviceId)).toEqual({ lastSeq: 3, checkinCount: 3 });
    await s.close();

    const fewer = await clusterServer(1, s.dataDir);
    for (const a of agents) expect(await rowNow(fewer, a.deviceId)).toEqual({ lastSeq: 3, checkinCount: 3 });
    const again = await openChannel(fewer, agents[0]!);
    expect(again.welcome.lastSeq).toBe(3);
    await again.checkin(4);
    await fewer.close();

    // As if a worker of an earlier run with more workers had acked a check-in and the whole server then died before folding it.
    const orphan = await WorkerJournal.open(workerJournalFile(s.dataDir, 3), { synchronous: 'NORMAL' });
    await orphan.append([{ deviceId: agents[1]!.deviceId, seq: 4, at: Date.now(), address: '127.0.0.1', count: 1 }]);
    await orphan.close();
    const more = await clusterServer(3, s.dataDir);
    expect(await rowNow(more, agents[0]!.deviceId)).toEqual({ lastSeq: 4, checkinCount: 4 });
    expect(await rowNow(more, agents[1]!.deviceId)).toEqual({ lastSeq: 4, checkinCount: 4 });
    for (const a of agents.slice(2)) expect(await rowNow(more, a.deviceId)).toEqual({ lastSeq: 3, checkinCount: 3 });
  });

  it('welcomes a device with its latest acked check-in on whichever worker it reconnects to, before any fold', async () => {
    const s = await clusterServer(2);
    const agent = await s.enrollAgent({ hostname: 'mover' });
    let seq = 0;
    let current = await openChannel(s, agent);
    for (let round = 0; round < 8; round += 1) {
      seq += 1;
      await current.checkin(seq);
      if (round % 2 === 0) {
        // The old channel still open: the new one replaces it (the old worker answers the probe after telling its check-ins).
        const next = await openChannel(s, agent);
        expect(next.welcome.lastSeq).toBe(seq);
        expect((await current.client.waitClose()).code).toBe(CloseCode.REPLACED);
        current = next;
      } else {
        // Closed first: the primary hears of the close after the check-ins.
        current.client.ws.close(1000);
        await waitFor(() => (s.server.registry.get(agent.deviceId) === undefined ? true : undefined), 'the channel to leave the registry');
        current = await openChannel(s, agent);
        expect(current.welcome.lastSeq).toBe(seq);
      }
    }
    expect(await rowNow(s, agent.deviceId)).toEqual({ lastSeq: 0, checkinCount: 0 }); // nothing folded: the sequences came from the workers
    expect((await s.storedDevice(agent.deviceId)).checkinCount).toBe(8);
  });

  it('moves an unreadable worker journal aside at start, logs it, and both workers serve check-ins', async () => {
    const dataDir = await h.tempDir('rollcall-data-');
    await fs.writeFile(workerJournalFile(dataDir, 1), 'this is not a SQLite file'.repeat(200));
    const s = await clusterServer(2, dataDir);
    const line = s.logs.find((l) => l.msg === 'agent worker check-in journal unreadable; moved aside (its check-ins are not folded) and made anew');
    expect(line).toMatchObject({ level: 50, file: workerJournalFile(dataDir, 1) });
    expect(String(line!.err)).toMatch(/not a database/);
    expect((await fs.readFile(String(line!.movedTo), 'utf8')).startsWith('this is not a SQLite file')).toBe(true);
    expect(s.server.agentWorkers!.size).toBe(2);
    const agents = await Promise.all([1, 2, 3, 4].map((n) => s.enrollAgent({ hostname: `u-${n}` })));
    for (const a of agents) await (await openChannel(s, a)).checkin(1);
    for (const a of agents) expect((await s.storedDevice(a.deviceId)).lastSeq).toBe(1);
    expect((await fs.readdir(dataDir)).filter((f) => f.includes('.unreadable-'))).toHaveLength(1);
    expect(path.basename(String(line!.movedTo)).startsWith('checkins-w1.db.unreadable-')).toBe(true);
  });

  it('has each worker delete what the primary folded from its own journal, behind its appends, and counts every check-in once', async () => {
    // Background folds every 50 ms: the primary folds, then hands each trim to the file's worker.
    const s = await h.startServer({ agentWorkers: 2 }, { workerJournalFoldMs: 50 });
    const agents = await Promise.all([1, 2, 3, 4].map((n) => s.enrollAgent({ hostname: `t-${n}` })));
    const channels = await Promise.all(agents.map((a) => openChannel(s, a)));
    // Rows still in the workers' files; while a worker listens the primary never deletes from its file, so 0 means the workers trimmed.
    const rowsLeft = async (): Promise<number> => {
      let n = 0;
      for (const slot of [1, 2]) {
        const db = await openDatabase(workerJournalFile(s.dataDir, slot));
        try {
          n += (await db.get<{ n: number }>('SELECT count(*) AS n FROM checkins'))!.n;
        } finally {
          await db.close();
        }
      }
      return n;
    };
    for (let seq = 1; seq <= 5; seq += 1) await Promise.all(channels.map((ch) => ch.checkin(seq)));
    await waitFor(async () => {
      for (const a of agents) if ((await rowNow(s, a.deviceId)).lastSeq !== 5) return undefined;
      return (await rowsLeft()) === 0 ? true : undefined;
    }, 'every check-in folded and trimmed from the workers\' files');
    for (const a of agents) expect(await rowNow(s, a.deviceId)).toEqual({ lastSeq: 5, checkinCount: 5 });
    expect(s.logs.filter((l) => /trim/.test(String(l.msg)))).toEqual([]);
    await s.close();
  });
});
