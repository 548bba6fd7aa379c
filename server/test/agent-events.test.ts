/**
 * Outbox events on the server (protocol 3): stored once per (device, seq),
 * acknowledged only after commit, with their health observations written
 * once; bad event frames are refused with the reason; protocol-2 agents
 * keep working and cannot send events.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { CloseCode } from '../../common/close-codes.js';
import { Harness, type EnrolledAgent, type RawClient, type TestServer } from '../../test/support/harness.js';

const h = new Harness();
afterEach(() => h.cleanup());

const attempt = (seq: number) => ({ seq, kind: 'attempt', at: 1000 + seq, data: { server: '127.0.0.1:2222', class: 'REFUSED', code: 'ECONNREFUSED', message: `try ${seq}`, at: 1000 + seq } });
const offline = (seq: number, at: number, reason?: string) => ({ seq, kind: 'checkin', at, data: reason === undefined ? { uptimeSec: 100 + seq } : { uptimeSec: 100 + seq, reason } });
const synthetic = (seq: number) => ({ seq, kind: 'synthetic', at: 1000 + seq, data: { n: seq } });

async function welcomed(s: TestServer, protocol?: number): Promise<{ client: RawClient; deviceId: string; agent: EnrolledAgent; welcome: Record<string, unknown> }> {
  const agent = await s.enrollAgent();
  const client = await s.rawClient(agent);
  await client.open();
  client.hello(agent.deviceId, protocol === undefined ? {} : { protocol });
  const welcome = (await client.waitMessage('welcome')) as unknown as Record<string, unknown>;
  return { client, deviceId: agent.deviceId, agent, welcome };
}

async function sendEvents(client: RawClient, events: unknown[]): Promise<number> {
  const from = client.messages.length;
  client.send({ type: 'events', events });
  return (await client.waitMessage('events_ack', 5000, from)).upTo;
}

describe('agent events', () => {
  it('stores each event once by (device, seq), acks the batch, and writes one observation per new failed attempt', async () => {
    const s = await h.startServer();
    const { client, deviceId, agent, welcome } = await welcomed(s);
    expect(welcome.lastEventSeq).toBe(0);
    expect(await sendEvents(client, [attempt(1), attempt(2), synthetic(3)])).toBe(3);
    // Redelivery of 2..3 together with a new 4: only 4 is new.
    expect(await sendEvents(client, [attempt(2), synthetic(3), attempt(4)])).toBe(4);
    const stored = await s.server.storage.events.list(deviceId);
    expect(stored.map((e) => [e.seq, e.kind])).toEqual([
      [1, 'attempt'],
      [2, 'attempt'],
      [3, 'synthetic'],
      [4, 'attempt'],
    ]);
    const observations = (await s.server.storage.evidence.observationsSince(0)).filter((o) => o.source === 'failed_attempt' && o.deviceId === deviceId);
    expect(observations).toHaveLength(3);
    client.terminate();

    // A new channel learns what the server holds.
    const again = await s.rawClient(agent);
    await again.open();
    again.hello(deviceId);
    expect((await again.waitMessage('welcome')).lastEventSeq).toBe(4);
  });

  it('prunes old events but still takes a late redelivery of a pruned one for a duplicate', async () => {
    const s = await h.startServer();
    const { client, deviceId } = await welcomed(s);
    await sendEvents(client, [attempt(1), attempt(2), attempt(3)]);
    expect(await s.server.storage.events.prune(Date.now() + 1000)).toBe(2);
    expect((await s.server.storage.events.list(deviceId)).map((e) => e.seq)).toEqual([3]);
    expect(await s.server.storage.events.lastSeq(deviceId)).toBe(3);
    await sendEvents(client, [attempt(2), attempt(3), attempt(4)]);
    expect((await s.server.storage.events.list(deviceId)).map((e) => e.seq)).toEqual([3, 4]);
    const observations = (await s.server.storage.evidence.observationsSince(0)).filter((o) => o.source === 'failed_attempt' && o.deviceId === deviceId);
    expect(observations).toHaveLength(4);
  });

  it('stores check-ins recorded offline once each and shows their count and newest time in the device view', async () => {
    const s = await h.startServer();
    const { client, deviceId } = await welcomed(s);
    const before = await s.api<Record<string, unknown>>('GET', `/api/v1/devices/${deviceId}`);
    expect(before.body).toMatchObject({ offlineCheckins: 0, lastOfflineCheckinAt: null });
    const t0 = Date.UTC(2026, 10, 21, 4, 0, 0);
    expect(await sendEvents(client, [offline(1, t0, 'REFUSED'), attempt(2), offline(3, t0 + 60_000, 'REFUSED')])).toBe(3);
    // Redelivered 3 with a new 4 (no reason known): only 4 counts.
    expect(await sendEvents(client, [offline(3, t0 + 60_000, 'REFUSED'), offline(4, t0 + 120_000)])).toBe(4);
    const stored = (await s.server.storage.events.list(deviceId)).filter((e) => e.kind === 'checkin');
    expect(stored.map((e) => [e.seq, e.at, e.data])).toEqual([
      [1, t0, { uptimeSec: 101, reason: 'REFUSED' }],
      [3, t0 + 60_000, { uptimeSec: 103, reason: 'REFUSED' }],
      [4, t0 + 120_000, { uptimeSec: 104 }],
    ]);
    const view = await s.api<Record<string, unknown>>('GET', `/api/v1/devices/${deviceId}`);
    expect(view.status).toBe(200);
    expect(view.body).toMatchObject({ offlineCheckins: 3, lastOfflineCheckinAt: new Date(t0 + 120_000).toISOString() });
    // An older record arriving later does not move the time back.
    await sendEvents(client, [offline(5, t0 - 60_000)]);
    const list = await s.api<{ devices: Record<string, unknown>[] }>('GET', '/api/v1/devices');
    expect(list.body.devices.find((d) => d.id === deviceId)).toMatchObject({ offlineCheckins: 4, lastOfflineCheckinAt: new Date(t0 + 120_000).toISOString() });
  });

  it('logs the count an agent reports in a dropped event', async () => {
    const s = await h.startServer();
    const { client } = await welcomed(s);
    await sendEvents(client, [{ seq: 7, kind: 'dropped', at: 5, data: { count: 6, throughSeq: 6 } }]);
    expect(s.logs.some((l) => l.msg === 'agent dropped events unsent (its outbox was full)' && l.dropped === 6)).toBe(true);
  });

  it.each([
    ['sequence numbers that do not increase', [synthetic(3), synthetic(3)], CloseCode.MALFORMED_FRAME, /must increase/],
    ['an unknown kind', [{ seq: 1, kind: 'surprise', at: 1, data: {} }], CloseCode.MALFORMED_FRAME, /invalid "events" message/],
    ['data that does not fit its kind', [{ seq: 1, kind: 'attempt', at: 1, data: { n: 1 } }], CloseCode.MALFORMED_FRAME, /invalid "events" message/],
    ['no events at all', [], CloseCode.MALFORMED_FRAME, /invalid "events" message/],
    ['a sequence number of 0', [synthetic(0)], CloseCode.MALFORMED_FRAME, /invalid "events" message/],
    ['a checkin without uptime', [{ seq: 1, kind: 'checkin', at: 1, data: { reason: 'REFUSED' } }], CloseCode.MALFORMED_FRAME, /invalid "events" message/],
    ['a checkin with a negative uptime', [{ seq: 1, kind: 'checkin', at: 1, data: { uptimeSec: -1 } }], CloseCode.MALFORMED_FRAME, /invalid "events" message/],
    ['a checkin with an unknown field', [{ seq: 1, kind: 'checkin', at: 1, data: { uptimeSec: 1, extra: true } }], CloseCode.MALFORMED_FRAME, /invalid "events" message/],
    ['a checkin with an overlong reason', [offline(1, 1, 'X'.repeat(17))], CloseCode.MALFORMED_FRAME, /invalid "events" message/],
    ['a checkin with an empty reason', [offline(1, 1, '')], CloseCode.MALFORMED_FRAME, /invalid "events" message/],
  ])('refuses a batch with %s, storing nothing from it', async (_what, events, code, reason) => {
    const s = await h.startServer();
    const { client, deviceId } = await welcomed(s);
    client.send({ type: 'events', events });
    const error = await client.waitMessage('error');
    expect(error.message).toMatch(reason);
    expect((await client.waitClose()).code).toBe(code);
    expect(await s.server.storage.events.list(deviceId)).toEqual([]);
    expect(await s.storedDevice(deviceId)).toMatchObject({ offlineCheckins: 0, lastOfflineCheckinAt: null });
  });

  it('refuses events before hello and from an agent that said protocol 2, which still checks in as before', async () => {
    const s = await h.startServer();
    const agent = await s.enrollAgent();
    const early = await s.rawClient(agent);
    await early.open();
    early.send({ type: 'events', events: [synthetic(1)] });
    expect((await early.waitClose()).code).toBe(CloseCode.UNEXPECTED_MESSAGE);

    const { client, welcome } = await welcomed(s, 2);
    expect(welcome.protocol).toBe(2);
    expect(welcome.lastEventSeq).toBeUndefined();
    client.send({ type: 'checkin', seq: 1, sentAt: Date.now(), uptimeSec: 1 });
    expect(await client.waitMessage('ack')).toEqual({ type: 'ack', seq: 1 });
    client.send({ type: 'events', events: [synthetic(1)] });
    expect((await client.waitClose()).code).toBe(CloseCode.UNEXPECTED_MESSAGE);
  });
});
