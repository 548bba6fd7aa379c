/**
 * Check-in records while offline, end to end with real processes: the
 * agent checks in live every second, the server is stopped, the agent
 * records a `checkin` outbox event per interval while it cannot connect,
 * the server comes back, and then holds each of those records exactly
 * once, in order, and shows their count and newest time in the device
 * view; while connected, no more are recorded.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it, onTestFailed } from 'vitest';
import { decodeRecords } from '../../agent/outbox-format.js';
import { openDatabase } from '../../server/storage/db.js';
import { Harness } from '../support/harness.js';
import { assertBuilt, eventually, freePort, Processes, readAgentStatus, ROLLCALL_AGENT, ServerFixture, type Proc } from './processes.js';

const OFFLINE_RECORDS = 3;

const h = new Harness();
const procs = new Processes();
afterAll(async () => {
  await procs.killAll();
  await h.cleanup();
});

interface StatusJson {
  state: string;
  lastAckedSeq: number;
  outbox: { pending: number; lastSeq: number; dropped: number } | null;
}

interface DeviceJson {
  offlineCheckins: number;
  lastOfflineCheckinAt: string | null;
}

describe('check-ins recorded while offline', { timeout: 120_000 }, () => {
  it('reach the server once each, in order, after it comes back, and show in the device view', async () => {
    assertBuilt();
    const dataDir = await h.tempDir('rollcall-offline-data-');
    const stateDir = path.join(await h.tempDir('rollcall-offline-agent-'), 'state');
    onTestFailed(async () => {
      const last = await fs.readFile(path.join(stateDir, 'status.json'), 'utf8').catch(() => 'none');
      process.stderr.write(`\nprocess output at failure:\n${procs.report()}\nagent status: ${last}\n`);
    });
    const ports = { agent: await freePort(), console: await freePort() };
    const fixture = new ServerFixture(procs, dataDir, ports);

    const startServer = (): Promise<Proc> => fixture.start();
    const status = (): Promise<StatusJson | undefined> => readAgentStatus<StatusJson>(stateDir);
    /** The `checkin` events in the agent's outbox file now. */
    const outboxCheckins = async (): Promise<{ seq: number; at: number }[]> => {
      const buf = await fs.readFile(path.join(stateDir, 'outbox.log')).catch(() => Buffer.alloc(0));
      return decodeRecords(buf)
        .records.map((r) => r.record)
        .flatMap((r) => ('event' in r && r.event.kind === 'checkin' ? [{ seq: r.event.seq, at: r.event.at }] : []));
    };
    const admin = (args: string[]): Promise<string> => fixture.admin(args);

    await startServer();
    const deviceId = await fixture.enroll('Customers/Offline', stateDir);
    const agent = procs.start('agent', ROLLCALL_AGENT, ['run', '--state-dir', stateDir, '--backoff-base', '100ms', '--backoff-cap', '400ms', '--interval', '1s', '--log-level', 'warn']);

    // Connected and checking in live: nothing recorded for check-ins in the outbox.
    await eventually(async () => ((s) => (s?.state === 'connected' && s.lastAckedSeq >= 2 ? s : undefined))(await status()), 'two live check-ins', 30_000, 50);
    expect(await outboxCheckins()).toEqual([]);

    // The server goes away; the agent records one check-in per second while it cannot connect.
    const stoppedAt = Date.now();
    fixture.server!.signal('SIGTERM');
    expect(await fixture.server!.waitExit(15_000)).toEqual({ code: 0, signal: null });
    const offline = await eventually(async () => ((c) => (c.length >= OFFLINE_RECORDS ? c : undefined))(await outboxCheckins()), `${OFFLINE_RECORDS} offline check-ins in the outbox`, 30_000, 50);
    expect((await status())?.state).not.toBe('connected');
    await startServer();

    // Delivered and acknowledged; then several live check-ins with no further record.
    const delivered = await eventually(
      async () => ((s) => (s?.state === 'connected' && s.outbox?.pending === 0 ? s : undefined))(await status()),
      'the outbox to be delivered after the server came back',
      30_000,
      50,
    );
    const deliveredAt = Date.now();
    await eventually(async () => (((await status())?.lastAckedSeq ?? 0) >= delivered.lastAckedSeq + 3 ? true : undefined), 'three more live check-ins', 30_000, 50);
    const shown = JSON.parse(await admin(['devices', 'show', deviceId, '--json'])) as DeviceJson;

    agent.signal('SIGTERM');
    expect(await agent.waitExit(10_000)).toEqual({ code: 0, signal: null });
    fixture.server!.signal('SIGTERM');
    expect(await fixture.server!.waitExit(15_000)).toEqual({ code: 0, signal: null });

    const db = await openDatabase(path.join(dataDir, 'rollcall.db'));
    h.defer(() => db.close());
    const rows = await db.all<{ seq: number; at: number; data: string }>("SELECT seq, at, data FROM agent_events WHERE device_id = ? AND kind = 'checkin' ORDER BY seq", [deviceId]);
    // Every record the agent wrote is there (once: the primary key), in the agent's order, with times in order.
    expect(rows.length).toBeGreaterThanOrEqual(offline.length);
    expect(rows.slice(0, offline.length).map((r) => [r.seq, r.at])).toEqual(offline.map((o) => [o.seq, o.at]));
    expect(rows.map((r) => r.at)).toEqual(rows.map((r) => r.at).sort((a, b) => a - b));
    // All recorded while the server was away (none once connected again), about a second apart.
    for (const r of rows) {
      expect(r.at).toBeGreaterThanOrEqual(stoppedAt);
      expect(r.at).toBeLessThanOrEqual(deliveredAt);
    }
    expect((await outboxCheckins()).filter((c) => c.at > deliveredAt)).toEqual([]);
    for (let i = 1; i < rows.length; i += 1) expect(rows[i]!.at - rows[i - 1]!.at).toBeGreaterThanOrEqual(900);
    const data = rows.map((r) => JSON.parse(r.data) as { uptimeSec: number; reason?: string });
    expect(data.every((d) => d.uptimeSec >= 0)).toBe(true);
    // The reason is the class of the last failure: the stopping server's close, then any failed attempt after it.
    const attemptClasses = (await db.all<{ data: string }>("SELECT data FROM agent_events WHERE device_id = ? AND kind = 'attempt'", [deviceId])).map((r) => (JSON.parse(r.data) as { class: string }).class);
    for (const d of data) expect(['CLOSED', ...attemptClasses]).toContain(d.reason);
    // No gap and no extra row over all the device's events.
    const events = await db.get<{ n: number; lo: number; hi: number }>('SELECT count(*) AS n, min(seq) AS lo, max(seq) AS hi FROM agent_events WHERE device_id = ?', [deviceId]);
    expect(events).toEqual({ n: events!.hi, lo: 1, hi: events!.hi });
    // The device view: the count and the newest time, as the server stored them.
    expect(shown).toMatchObject({ offlineCheckins: rows.length, lastOfflineCheckinAt: new Date(rows[rows.length - 1]!.at).toISOString() });
    const device = await db.get<{ offline_checkins: number }>('SELECT offline_checkins FROM devices WHERE id = ?', [deviceId]);
    expect(device!.offline_checkins).toBe(rows.length);
    process.stdout.write(`offline check-ins test: ${offline.length} in the outbox at restart, ${rows.length} stored, reasons ${JSON.stringify(data.map((d) => d.reason))}\n`);
  });
});
