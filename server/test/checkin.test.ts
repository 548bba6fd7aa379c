import { afterEach, describe, expect, it } from 'vitest';
import { Harness, waitFor } from '../../test/support/harness.js';
import { restartWindowMs } from '../restart-spread.js';

const h = new Harness();
afterEach(() => h.cleanup());

/** A server and one enrolled agent whose channel got its welcome. */
async function welcomedAgent() {
  const s = await h.startServer();
  const agent = await s.enrollAgent();
  const c = await s.rawClient(agent);
  await c.open();
  c.hello(agent.deviceId);
  await c.waitMessage('welcome');
  return { s, agent, c };
}

describe('check-in channel', () => {
  it('welcomes an enrolled agent, acks its check-ins once stored, and shows it online', async () => {
    const s = await h.startServer({ checkinIntervalSec: 30 });
    const agent = await s.enrollAgent({ group: 'Customers/Acme' });
    const c = await s.rawClient(agent);
    await c.open();
    c.hello(agent.deviceId);
    const welcome = await c.waitMessage('welcome');
    expect(welcome).toMatchObject({ deviceId: agent.deviceId, intervalSec: 30, lastSeq: 0, group: { path: 'All/Customers/Acme' } });
    c.send({ type: 'checkin', seq: 1, sentAt: Date.now(), uptimeSec: 10 });
    expect(await c.waitMessage('ack')).toEqual({ type: 'ack', seq: 1 });
    const stored = await s.storedDevice(agent.deviceId);
    expect(stored).toMatchObject({ lastSeq: 1, checkinCount: 1 });
    const res = await s.api<{ status: string; connected: boolean; groupPath: string }>('GET', `/api/v1/devices/${agent.deviceId}`);
    expect(res.body).toMatchObject({ status: 'online', connected: true, groupPath: 'All/Customers/Acme' });
    expect(s.logs.some((l) => l.msg === 'agent connected' && l.deviceId === agent.deviceId)).toBe(true);
  });

  it('acks a redelivered sequence number without counting it twice', async () => {
    const { s, agent, c } = await welcomedAgent();
    c.send({ type: 'checkin', seq: 1, sentAt: Date.now(), uptimeSec: 1 });
    await c.waitMessage('ack');
    c.send({ type: 'checkin', seq: 1, sentAt: Date.now(), uptimeSec: 1 });
    await waitFor(() => c.messages.filter((m) => m.type === 'ack').length === 2, 'second ack');
    c.send({ type: 'checkin', seq: 2, sentAt: Date.now(), uptimeSec: 2 });
    await waitFor(() => c.messages.filter((m) => m.type === 'ack').length === 3, 'third ack');
    expect(await s.storedDevice(agent.deviceId)).toMatchObject({ lastSeq: 2, checkinCount: 2 });
  });

  it('acks check-ins while the main database is held by a long transaction, and shows them once it is free', async () => {
    const { s, agent, c } = await welcomedAgent();
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const busy = s.server.storage.db.transaction(() => held); // as an MSP sync applying a large plan does
    for (const seq of [1, 2, 3]) {
      c.send({ type: 'checkin', seq, sentAt: Date.now(), uptimeSec: seq });
      await waitFor(() => c.messages.some((m) => m.type === 'ack' && m.seq === seq), `the ack of check-in ${seq}`); // durable in the check-in journal
    }
    release();
    await busy;
    expect(await s.storedDevice(agent.deviceId)).toMatchObject({ lastSeq: 3, checkinCount: 3 });
  });

  it('advertises the fleet-sized reconnect window to protocol-4 agents only', async () => {
    const s = await h.startServer();
    const a = await s.enrollAgent();
    const b = await s.enrollAgent();
    const current = await s.rawClient(a);
    await current.open();
    current.hello(a.deviceId);
    // Sized to the agents connected when it is sent (here: this one), as a clean shutdown's spread is.
    expect(await current.waitMessage('welcome')).toMatchObject({ protocol: 4, reconnectWindowMs: restartWindowMs(1) });
    const older = await s.rawClient(b);
    await older.open();
    older.hello(b.deviceId, { protocol: 3 });
    const welcome = await older.waitMessage('welcome');
    expect(welcome).toMatchObject({ protocol: 3 });
    expect(welcome).not.toHaveProperty('reconnectWindowMs'); // a protocol-3 agent would refuse a field it does not know
  });
});
