import { EventEmitter } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { RollcallError } from '../../common/errors.js';
import { captureLogger, waitFor } from '../../test/support/harness.js';
import type { CheckinRecord } from '../checkin-writer.js';
import { CheckinsSeen, WorkerCheckins, workerCommitGapMs, type SeenCheckin } from '../cluster/worker-checkins.js';
import { RpcPeer, type RpcMessage, type RpcPort } from '../cluster/rpc.js';
import { relogLine } from '../cluster/worker-log.js';

/** Two ends of an in-memory channel, delivering asynchronously as IPC does. */
function channel(): { a: RpcPort & { drop(): void }; b: RpcPort & { drop(): void } } {
  const ea = new EventEmitter();
  const eb = new EventEmitter();
  let open = true;
  const end = (self: EventEmitter, peer: EventEmitter) => ({
    send(m: RpcMessage) {
      if (!open) throw Object.assign(new Error('channel closed'), { code: 'ERR_IPC_CHANNEL_CLOSED' });
      setImmediate(() => peer.emit('message', JSON.parse(JSON.stringify(m))));
      return true;
    },
    on(event: string, fn: (...args: unknown[]) => void) {
      self.on(event, fn);
      return self;
    },
    drop() {
      open = false;
      ea.emit('disconnect');
      eb.emit('disconnect');
    },
  });
  return { a: end(ea, eb) as never, b: end(eb, ea) as never };
}

type Calls = { add: { args: { x: number; y: number }; result: number }; refuse: { args: null; result: null }; crash: { args: null; result: null }; hang: { args: null; result: null } };
type Notes = { hi: { from: string } };
const none = { calls: {}, notes: {} } as never;
const timers: NodeJS.Timeout[] = [];
afterEach(() => timers.splice(0).forEach(clearTimeout));

function pair(timeoutMs = 1000) {
  const { a, b } = channel();
  const heard: string[] = [];
  const { log, lines } = captureLogger();
  const server = new RpcPeer<Record<string, never>, Record<string, never>, Calls, Notes>(
    b,
    {
      calls: {
        add: ({ x, y }) => x + y,
        refuse: async () => {
          throw new RollcallError('ENROLL_TOKEN_USED_UP', 'the enrollment token has no uses left');
        },
        crash: () => {
          throw new TypeError('boom');
        },
        hang: () => new Promise<null>((resolve) => timers.push(setTimeout(() => resolve(null), 5000))),
      },
      notes: { hi: ({ from }) => void heard.push(from) },
    },
    log,
  );
  const client = new RpcPeer<Calls, Notes, Record<string, never>, Record<string, never>>(a, none, log, timeoutMs);
  return { client, server, heard, lines, drop: () => a.drop() };
}

describe('IPC calls between the primary and agent workers', () => {
  it('answers calls by id and delivers notifications', async () => {
    const { client, heard } = pair();
    expect(await Promise.all([client.call('add', { x: 1, y: 2 }), client.call('add', { x: 40, y: 2 })])).toEqual([3, 42]);
    client.notify('hi', { from: 'worker 1' });
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    expect(heard).toEqual(['worker 1']);
  });

  it('carries a refusal as the same RollcallError code and message, and hides other errors behind INTERNAL (logged)', async () => {
    const { client, lines } = pair();
    await expect(client.call('refuse', null)).rejects.toMatchObject({ code: 'ENROLL_TOKEN_USED_UP', message: 'the enrollment token has no uses left' });
    await expect(client.call('crash', null)).rejects.toMatchObject({ code: 'INTERNAL', message: 'boom' });
    expect(lines.some((l) => l.msg === 'IPC call failed' && l.method === 'crash')).toBe(true);
  });

  it('fails a call that gets no answer by its deadline with RPC_TIMEOUT', async () => {
    const { client } = pair(50);
    await expect(client.call('hang', null)).rejects.toMatchObject({ code: 'RPC_TIMEOUT', retryable: true });
    expect(client.waiting).toBe(0);
  });

  it('fails every waiting call at once when the channel goes away, and refuses new ones', async () => {
    const { client, drop } = pair(10_000);
    const waiting = [client.call('hang', null), client.call('hang', null)];
    drop();
    for (const p of waiting) await expect(p).rejects.toMatchObject({ code: 'RPC_CHANNEL_CLOSED' });
    await expect(client.call('add', { x: 1, y: 1 })).rejects.toMatchObject({ code: 'RPC_CHANNEL_CLOSED' });
    expect(() => client.notify('hi', { from: 'late' })).not.toThrow();
  });

  it('answers an unknown method with RPC_UNKNOWN_METHOD and logs an unknown notification', async () => {
    const { client, lines } = pair();
    const loose = client as unknown as RpcPeer<{ nope: { args: null; result: null } }, { what: null }, Record<string, never>, Record<string, never>>;
    await expect(loose.call('nope', null)).rejects.toMatchObject({ code: 'RPC_UNKNOWN_METHOD' });
    loose.notify('what', null);
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    expect(lines.some((l) => l.msg === 'unknown IPC notification ignored' && l.note === 'what')).toBe(true);
  });
});

describe('agent worker log lines', () => {
  it('logs a worker\'s pino line again at its level with its fields, and other output as a line', () => {
    const { log, lines } = captureLogger();
    relogLine(log, JSON.stringify({ level: 40, time: 1, msg: 'agent rejected', reason: 'DEVICE_UNKNOWN' }), 'stdout');
    relogLine(log, 'Segmentation fault', 'stderr');
    relogLine(log, '', 'stdout');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({ level: 40, msg: 'agent rejected', reason: 'DEVICE_UNKNOWN' });
    expect(lines[1]).toMatchObject({ level: 40, msg: 'agent worker stderr', line: 'Segmentation fault' });
  });
});

describe('check-ins of an agent worker', () => {
  it('spaces a busy worker\'s commits more the more workers share the check-ins, within 10 to 25 ms', () => {
    expect([1, 2, 3, 4, 5, 9, 64].map(workerCommitGapMs)).toEqual([10, 10, 15, 20, 25, 25, 25]);
  });

  const record = (seq: number, count: 0 | 1 = 1): CheckinRecord => ({ deviceId: 'dev_a', seq, at: 1000 + seq, address: '127.0.0.1', count });

  it('settles each check-in once its journal write is done, then tells the primary the new ones in one note per tick', async () => {
    const writes: number[][] = [];
    let commit: () => void = () => undefined;
    const notes: SeenCheckin[][] = [];
    const checkins = new WorkerCheckins(
      {
        append: (updates) => {
          writes.push(updates.map((u) => u.seq));
          return new Promise<void>((resolve) => (commit = resolve));
        },
        trim: () => Promise.resolve(0),
        close: () => Promise.resolve(),
      },
      (items) => notes.push(items),
      { noteEveryMs: 20, minGapMs: 0 },
    );
    const settled: number[] = [];
    const first = checkins.record(record(1)).then(() => void settled.push(1));
    await new Promise((r) => setImmediate(r));
    expect(writes).toEqual([[1]]);
    expect(settled).toEqual([]); // not durable yet: nothing may be acked
    const second = [checkins.record(record(2)).then(() => void settled.push(2)), checkins.record(record(2, 0)).then(() => void settled.push(0))];
    commit();
    await first;
    await new Promise((r) => setImmediate(r));
    expect(writes).toEqual([[1], [2]]); // the two that came during the write, coalesced into one row
    commit();
    await Promise.all(second);
    expect(settled).toEqual([1, 2, 0]);
    expect(checkins.latestSeq('dev_a')).toBe(2);
    await waitFor(() => notes.length > 0 || undefined, 'the note');
    // The redelivery (count 0) is not news for the feed.
    expect(notes).toEqual([[{ deviceId: 'dev_a', seq: 1, at: 1001 }, { deviceId: 'dev_a', seq: 2, at: 1002 }]]);
  });

  it('fails a check-in whose journal write failed, so its channel closes and the agent resends, and tells nothing of it', async () => {
    const notes: SeenCheckin[][] = [];
    const checkins = new WorkerCheckins({ append: () => Promise.reject(new Error('disk I/O error')), trim: () => Promise.resolve(0), close: () => Promise.resolve() }, (items) => notes.push(items), { noteEveryMs: 1 });
    const results = await Promise.allSettled([checkins.record(record(1)), checkins.record(record(2))]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    await checkins.close();
    expect(notes).toEqual([]);
  });

  it('sends what is left in a last note when closed, and the primary raises each in the feed and keeps the latest sequence', async () => {
    const notes: SeenCheckin[][] = [];
    const checkins = new WorkerCheckins({ append: () => Promise.resolve(), trim: () => Promise.resolve(0), close: () => Promise.resolve() }, (items) => notes.push(items), { noteEveryMs: 60_000 });
    await checkins.record(record(7));
    await checkins.close();
    expect(notes).toEqual([[{ deviceId: 'dev_a', seq: 7, at: 1007 }]]);
    const events: unknown[] = [];
    const seen = new CheckinsSeen((e) => events.push(e));
    seen.noted(notes[0]!);
    seen.folded([{ deviceId: 'dev_a', seq: 5, at: 1, address: 'x', count: 1 }, { deviceId: 'dev_b', seq: 3, at: 1, address: 'x', count: 1 }]);
    expect(events).toEqual([{ kind: 'checkin', deviceId: 'dev_a', seq: 7, at: 1007 }]);
    expect([seen.latestSeq('dev_a'), seen.latestSeq('dev_b'), seen.latestSeq('dev_c')]).toEqual([7, 3, 0]);
  });
});
