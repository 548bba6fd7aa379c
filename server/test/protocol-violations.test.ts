/**
 * Protocol violations after a valid upgrade: bad frames, frames at the
 * wrong time, too many or too large frames, and the same certificate on two
 * channels. Each must close only the offending channel with the documented
 * code, keep every check-in accepted before it, and leave another agent
 * served.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { CloseCode } from '../../common/close-codes.js';
import { MAX_FRAME_BYTES } from '../../common/protocol.js';
import { PROTOCOL_VERSION } from '../../common/version.js';
import { Harness, waitFor, type EnrolledAgent, type LogLine, type RawClient, type TestServer } from '../../test/support/harness.js';

const h = new Harness();
afterEach(() => h.cleanup());

/** A welcomed channel of an enrolled agent. */
interface Channel {
  readonly agent: EnrolledAgent;
  readonly client: RawClient;
  /** Sends a check-in and waits for its ack on this channel. */
  checkin(seq: number): Promise<void>;
}

async function openChannel(s: TestServer, agent: EnrolledAgent): Promise<Channel> {
  const client = await s.rawClient(agent);
  await client.open();
  client.hello(agent.deviceId);
  await client.waitMessage('welcome');
  const checkin = async (seq: number): Promise<void> => {
    const from = client.messages.length;
    client.send(checkinFrame(seq));
    expect(await client.waitMessage('ack', 5000, from)).toEqual({ type: 'ack', seq });
  };
  return { agent, client, checkin };
}

function checkinFrame(seq: number): Record<string, unknown> {
  return { type: 'checkin', seq, sentAt: Date.now(), uptimeSec: seq };
}

/** Another agent, connected before the violation; `stillServed` proves it is unaffected. */
async function connectBystander(s: TestServer): Promise<{ deviceId: string; stillServed(): Promise<void> }> {
  const ch = await openChannel(s, await s.enrollAgent({ group: 'Customers/Bystander', hostname: 'bystander' }));
  let seq = 0;
  const stillServed = async (): Promise<void> => {
    seq += 1;
    await ch.checkin(seq);
    expect(ch.client.closeInfo).toBeUndefined();
    expect(s.server.registry.get(ch.agent.deviceId)).toBeDefined();
  };
  await stillServed();
  return { deviceId: ch.agent.deviceId, stillServed };
}

const storedDevice = (s: TestServer, deviceId: string) => s.storedDevice(deviceId);

function findLog(s: TestServer, msg: string, fields: Record<string, unknown>): LogLine | undefined {
  return s.logs.find((l) => l.msg === msg && Object.entries(fields).every(([k, v]) => l[k] === v));
}

function waitLog(s: TestServer, msg: string, fields: Record<string, unknown>): Promise<LogLine> {
  return waitFor(() => findLog(s, msg, fields), `log line "${msg}" with ${JSON.stringify(fields)}`, 5000);
}

/**
 * Checks the server's side of a violation: the last frame before the close
 * was an `error` with `errorCode`, the close code matches, and the log says
 * why.
 */
async function expectClosedForViolation(s: TestServer, ch: Pick<Channel, 'agent' | 'client'>, closeCode: number, errorCode: string, why: RegExp): Promise<void> {
  const closed = await ch.client.waitClose();
  expect(closed.code).toBe(closeCode);
  const last = ch.client.messages.at(-1);
  expect(last).toMatchObject({ type: 'error', code: errorCode });
  expect(last?.type === 'error' && last.message).toMatch(why);
  const line = await waitLog(s, 'closing agent channel', { deviceId: ch.agent.deviceId, closeCode, errorCode });
  expect(String(line.reason)).toMatch(why);
  // The session's lines name its channel (its child logger is made on demand, with the same bindings).
  expect(line.connId).toMatch(/^c\d+$/);
  await waitLog(s, 'agent disconnected', { deviceId: ch.agent.deviceId, connId: line.connId });
  // Exactly one: frames that follow a violation must not each log (and answer) it again.
  expect(s.logs.filter((l) => l.msg === 'closing agent channel' && l.deviceId === ch.agent.deviceId)).toHaveLength(1);
  expect(s.server.registry.get(ch.agent.deviceId)).toBeUndefined();
}

const now = Date.now();
const MALFORMED_FRAMES: readonly { name: string; frame: string; why: RegExp }[] = [
  { name: 'text that is not JSON', frame: 'checkin please', why: /not valid JSON/ },
  { name: 'truncated JSON', frame: '{"type":"checkin","seq":3', why: /not valid JSON/ },
  { name: 'a JSON array', frame: '[{"type":"checkin"}]', why: /not a JSON object/ },
  { name: 'a JSON number', frame: '42', why: /not a JSON object/ },
  { name: 'JSON null', frame: 'null', why: /not a JSON object/ },
  { name: 'a JSON string', frame: '"checkin"', why: /not a JSON object/ },
  { name: 'an object without a type', frame: JSON.stringify({ seq: 3, sentAt: now, uptimeSec: 3 }), why: /no string "type"/ },
  { name: 'an unknown type', frame: JSON.stringify({ type: 'reboot', seq: 3 }), why: /unknown message type "reboot"/ },
  { name: 'a server-only type', frame: JSON.stringify({ type: 'ack', seq: 3 }), why: /unknown message type "ack"/ },
  { name: 'a check-in with missing fields', frame: JSON.stringify({ type: 'checkin', seq: 3 }), why: /invalid "checkin" message: .*required property/ },
  { name: 'a check-in whose seq is a string', frame: JSON.stringify({ type: 'checkin', seq: '3', sentAt: now, uptimeSec: 3 }), why: /invalid "checkin" message: \/seq/ },
  { name: 'a check-in whose seq is zero', frame: JSON.stringify({ type: 'checkin', seq: 0, sentAt: now, uptimeSec: 3 }), why: /invalid "checkin" message: \/seq/ },
  { name: 'a check-in whose seq is fractional', frame: JSON.stringify({ type: 'checkin', seq: 3.5, sentAt: now, uptimeSec: 3 }), why: /invalid "checkin" message: \/seq/ },
  { name: 'a check-in whose sentAt is text', frame: JSON.stringify({ type: 'checkin', seq: 3, sentAt: 'yesterday', uptimeSec: 3 }), why: /invalid "checkin" message: \/sentAt/ },
  { name: 'a check-in with an extra field', frame: JSON.stringify({ type: 'checkin', seq: 3, sentAt: now, uptimeSec: 3, reboot: true }), why: /additional properties/ },
  { name: 'an error frame with a numeric code', frame: JSON.stringify({ type: 'error', code: 7, message: 'x' }), why: /invalid "error" message: \/code/ },
];

describe('malformed frames', () => {
  it.each(MALFORMED_FRAMES)('closes with 4001 after an error frame when a welcomed agent sends $name, keeping earlier check-ins', async ({ frame, why }) => {
    const s = await h.startServer();
    const bystander = await connectBystander(s);
    const ch = await openChannel(s, await s.enrollAgent());
    await ch.checkin(1);
    // Seq 2 is accepted but not yet acked when the bad frame arrives: it must still be kept.
    ch.client.send(checkinFrame(2));
    ch.client.send(frame);
    // Seq 3 follows the violation in the same burst: the channel is closing, so it must not be acted on.
    ch.client.send(checkinFrame(3));

    await expectClosedForViolation(s, ch, CloseCode.MALFORMED_FRAME, 'MALFORMED_FRAME', why);
    expect(await storedDevice(s, ch.agent.deviceId)).toMatchObject({ lastSeq: 2, checkinCount: 2 });
    await bystander.stillServed();
  });

  it('closes with 4001 a binary frame even when its bytes are a valid check-in', async () => {
    const s = await h.startServer();
    const bystander = await connectBystander(s);
    const ch = await openChannel(s, await s.enrollAgent());
    await ch.checkin(1);
    ch.client.ws.send(Buffer.from(JSON.stringify(checkinFrame(2))), { binary: true });
    ch.client.send(checkinFrame(3));

    await expectClosedForViolation(s, ch, CloseCode.MALFORMED_FRAME, 'MALFORMED_FRAME', /binary frames are not accepted/);
    expect(await storedDevice(s, ch.agent.deviceId)).toMatchObject({ lastSeq: 1, checkinCount: 1 });
    await bystander.stillServed();
  });

  it('closes with 4001 a hello with a mistyped field, without recording the connection', async () => {
    const s = await h.startServer();
    const bystander = await connectBystander(s);
    const agent = await s.enrollAgent({ hostname: 'before' });
    const client = await s.rawClient(agent);
    await client.open();
    client.hello(agent.deviceId, { protocol: String(PROTOCOL_VERSION), hostname: 'after' });

    await expectClosedForViolation(s, { agent, client }, CloseCode.MALFORMED_FRAME, 'MALFORMED_FRAME', /invalid "hello" message: \/protocol/);
    expect(await s.server.storage.devices.get(agent.deviceId)).toMatchObject({ hostname: 'before', lastConnectedAt: null });
    await bystander.stillServed();
  });

  it('closes with 4001 a hello with an extra field', async () => {
    const s = await h.startServer();
    const bystander = await connectBystander(s);
    const agent = await s.enrollAgent();
    const client = await s.rawClient(agent);
    await client.open();
    client.hello(agent.deviceId, { admin: true });

    await expectClosedForViolation(s, { agent, client }, CloseCode.MALFORMED_FRAME, 'MALFORMED_FRAME', /additional properties/);
    await bystander.stillServed();
  });
});

describe('frame size and rate limits', () => {
  it('accepts a frame of exactly MAX_FRAME_BYTES and closes with 1009 on one byte more', async () => {
    const s = await h.startServer();
    const bystander = await connectBystander(s);
    const ch = await openChannel(s, await s.enrollAgent());
    await ch.checkin(1);
    const json = JSON.stringify(checkinFrame(2));
    const largest = json + ' '.repeat(MAX_FRAME_BYTES - Buffer.byteLength(json)); // trailing blanks are valid JSON
    expect(Buffer.byteLength(largest)).toBe(MAX_FRAME_BYTES);
    ch.client.send(largest);
    await waitFor(() => ch.client.messages.some((m) => m.type === 'ack' && m.seq === 2), 'ack of the largest frame');

    const tooLarge = JSON.stringify(checkinFrame(3)) + ' '.repeat(MAX_FRAME_BYTES);
    ch.client.send(tooLarge.slice(0, MAX_FRAME_BYTES + 1));
    expect((await ch.client.waitClose()).code).toBe(1009);
    expect(ch.client.messages.some((m) => m.type === 'ack' && m.seq === 3)).toBe(false);
    await waitLog(s, 'agent socket error', { deviceId: ch.agent.deviceId, err: 'Max payload size exceeded' });
    await waitLog(s, 'agent disconnected', { deviceId: ch.agent.deviceId });
    expect(await storedDevice(s, ch.agent.deviceId)).toMatchObject({ lastSeq: 2, checkinCount: 2 });
    expect(s.server.registry.get(ch.agent.deviceId)).toBeUndefined();
    await bystander.stillServed();
  });

  it('closes with 4007 RATE_LIMITED a channel that floods frames beyond its budget, keeping what it accepted first', async () => {
    const s = await h.startServer({ maxFramesPerSec: 5, frameBurst: 10 });
    const bystander = await connectBystander(s);
    const ch = await openChannel(s, await s.enrollAgent());
    await ch.checkin(1);
    const flood = 40;
    for (let seq = 2; seq <= flood; seq += 1) ch.client.send(checkinFrame(seq));

    await expectClosedForViolation(s, ch, CloseCode.RATE_LIMITED, 'RATE_LIMITED', /too many frames/);
    expect(ch.client.messages.at(-1)).toMatchObject({ type: 'error', code: 'RATE_LIMITED', retryAfterMs: 1000 });
    const acked = ch.client.messages.flatMap((m) => (m.type === 'ack' ? [m.seq] : []));
    const stored = await storedDevice(s, ch.agent.deviceId);
    // The burst of 10 held hello, check-in 1 and at least 8 more; the flood as a whole was cut off.
    expect(stored.lastSeq).toBeGreaterThanOrEqual(9);
    expect(stored.lastSeq).toBeLessThan(flood);
    expect(stored.checkinCount).toBe(stored.lastSeq);
    expect(Math.max(...acked)).toBeLessThanOrEqual(stored.lastSeq);
    await bystander.stillServed();
  });
});

describe('messages at the wrong time', () => {
  /** Enrolls an agent and stores check-ins 1..n over a first, cleanly closed channel. */
  async function agentWithHistory(s: TestServer, n: number): Promise<EnrolledAgent> {
    const agent = await s.enrollAgent({ hostname: 'history' });
    const first = await openChannel(s, agent);
    for (let seq = 1; seq <= n; seq += 1) await first.checkin(seq);
    first.client.ws.close(1000, 'bye');
    await first.client.waitClose();
    await waitFor(() => s.server.registry.get(agent.deviceId) === undefined, 'first channel unregistered');
    return agent;
  }

  it('closes with 4000 UNSUPPORTED_VERSION a hello with a newer protocol version, without recording the connection', async () => {
    const s = await h.startServer();
    const bystander = await connectBystander(s);
    const agent = await agentWithHistory(s, 2);
    const before = await storedDevice(s, agent.deviceId);
    expect(before.hostname).not.toBe('renamed');
    const client = await s.rawClient(agent);
    await client.open();
    client.hello(agent.deviceId, { protocol: PROTOCOL_VERSION + 1, hostname: 'renamed' });

    await expectClosedForViolation(s, { agent, client }, CloseCode.UNSUPPORTED_VERSION, 'UNSUPPORTED_VERSION', new RegExp(`protocol ${PROTOCOL_VERSION + 1} is not supported`));
    expect(client.messages.some((m) => m.type === 'welcome')).toBe(false);
    expect(await storedDevice(s, agent.deviceId)).toMatchObject({ lastSeq: 2, checkinCount: 2, hostname: before.hostname, lastConnectedAt: before.lastConnectedAt });
    await bystander.stillServed();
  });

  it('closes with 4008 UNEXPECTED_MESSAGE a check-in sent before hello, and does not store it', async () => {
    const s = await h.startServer();
    const bystander = await connectBystander(s);
    const agent = await agentWithHistory(s, 2);
    const client = await s.rawClient(agent);
    await client.open();
    client.send(checkinFrame(3));
    client.hello(agent.deviceId); // too late: the channel is already closing

    await expectClosedForViolation(s, { agent, client }, CloseCode.UNEXPECTED_MESSAGE, 'UNEXPECTED_MESSAGE', /check-in before hello/);
    expect(client.messages.some((m) => m.type === 'welcome')).toBe(false);
    expect(client.messages.some((m) => m.type === 'ack')).toBe(false);
    expect(await storedDevice(s, agent.deviceId)).toMatchObject({ lastSeq: 2, checkinCount: 2 });
    await bystander.stillServed();
  });

  it('closes with 4008 UNEXPECTED_MESSAGE a second hello on the same channel, keeping its check-ins', async () => {
    const s = await h.startServer();
    const bystander = await connectBystander(s);
    const ch = await openChannel(s, await s.enrollAgent());
    await ch.checkin(1);
    ch.client.send(checkinFrame(2));
    ch.client.hello(ch.agent.deviceId);
    ch.client.send(checkinFrame(3));

    await expectClosedForViolation(s, ch, CloseCode.UNEXPECTED_MESSAGE, 'UNEXPECTED_MESSAGE', /hello was already received/);
    expect(ch.client.messages.filter((m) => m.type === 'welcome')).toHaveLength(1);
    expect(await storedDevice(s, ch.agent.deviceId)).toMatchObject({ lastSeq: 2, checkinCount: 2 });
    await bystander.stillServed();
  });
});

describe('one certificate on two channels', () => {
  it('replaces the older channel with 4004, serves the newer one from the right sequence, and flags a possible clone', async () => {
    const s = await h.startServer();
    const bystander = await connectBystander(s);
    const agent = await s.enrollAgent();
    // Both upgrades complete before either says hello: the same certificate is connected twice at once.
    const older = await s.rawClient(agent);
    const newer = await s.rawClient(agent);
    await Promise.all([older.open(), newer.open()]);
    older.hello(agent.deviceId);
    await older.waitMessage('welcome');
    older.send(checkinFrame(1));
    await older.waitMessage('ack');
    expect((await s.api<{ possibleCloneAt: string | null }>('GET', `/api/v1/devices/${agent.deviceId}`)).body.possibleCloneAt).toBeNull();

    // Same fingerprint: the older channel being alive is what makes this look like a clone.
    newer.hello(agent.deviceId, { hostname: 'second-machine' });
    expect(await older.waitClose()).toEqual({ code: CloseCode.REPLACED, reason: 'replaced by a newer connection of the same device' });
    const welcome = await newer.waitMessage('welcome');
    expect(welcome.lastSeq).toBe(1); // check-in 1 is durable; the newer channel must know it
    newer.send(checkinFrame(1)); // a redelivery must not be counted again
    newer.send(checkinFrame(2));
    await waitFor(() => newer.messages.some((m) => m.type === 'ack' && m.seq === 2), 'ack of check-in 2 on the newer channel');
    expect(newer.closeInfo).toBeUndefined();

    const view = await waitFor(async () => {
      const res = await s.api<{ possibleCloneAt: string | null; connected: boolean }>('GET', `/api/v1/devices/${agent.deviceId}`);
      return res.body.possibleCloneAt !== null ? res.body : undefined;
    }, 'possibleCloneAt to be set');
    expect(view.connected).toBe(true);
    expect(findLog(s, 'device connected again; older connection replaced', { deviceId: agent.deviceId, possibleClone: true })).toBeDefined();
    expect(s.server.registry.get(agent.deviceId)).toBeDefined();
    // Connect facts are batched (within CONNECT_BATCH_INTERVAL_MS): nothing waits for them, so neither does this test.
    await waitFor(async () => ((await storedDevice(s, agent.deviceId)).hostname === 'second-machine' ? true : undefined), 'the newer channel\'s connect facts stored');
    expect(await storedDevice(s, agent.deviceId)).toMatchObject({ lastSeq: 2, checkinCount: 2, hostname: 'second-machine' });
    await bystander.stillServed();
  });

  it('does not take for a clone a reconnect that replaces a channel quiet for a whole heartbeat pass', async () => {
    // Passes every 300 ms; with check-ins due every 60 s the quiet channel would be pinged only at its fourth quiet pass.
    const s = await h.startServer({ pingIntervalMs: 300 });
    const bystander = await connectBystander(s);
    const agent = await s.enrollAgent();
    const older = await s.rawClient(agent);
    await older.open();
    older.hello(agent.deviceId);
    await older.waitMessage('welcome');
    older.ws.pause(); // a half-dead channel: nothing read, so no pong either
    await waitFor(() => s.server.registry.get(agent.deviceId)?.alive === false || undefined, 'a heartbeat pass to find the older channel quiet');

    const newer = await s.rawClient(agent);
    await newer.open();
    newer.hello(agent.deviceId);
    await newer.waitMessage('welcome');
    older.ws.resume();
    expect(await older.waitClose()).toMatchObject({ code: CloseCode.REPLACED });
    expect(findLog(s, 'device connected again; older connection replaced', { deviceId: agent.deviceId, possibleClone: false })).toBeDefined();
    expect((await storedDevice(s, agent.deviceId)).possibleCloneAt).toBeNull();
    await bystander.stillServed();
  });
});
