import { EventEmitter } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { RollcallError } from '../../common/errors.js';
import { captureLogger } from '../../test/support/harness.js';
import type { CheckinRecord } from '../checkin-writer.js';
import { CheckinBatcher, workerCheckinBatching, WORKER_CHECKIN_WINDOW_MS, WORKER_MAX_CHECKIN_WINDOW_MS } from '../cluster/checkin-batcher.js';
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

describe('check-in batches of an agent worker', () => {
  const record = (seq: number): CheckinRecord => ({ deviceId: 'dev_a', seq, at: 1000 + seq, address: '127.0.0.1', count: 1 });

  it('sends the check-ins of one event-loop turn in one call and settles each when that call is answered', async () => {
    const calls: number[][] = [];
    let answer: () => void = () => undefined;
    const batcher = new CheckinBatcher((records) => {
      calls.push(records.map((r) => r.seq));
      return new Promise<void>((resolve) => (answer = resolve));
    });
    const settled: number[] = [];
    const first = [1, 2, 3].map((seq) => batcher.record(record(seq)).then(() => void settled.push(seq)));
    await new Promise((r) => setImmediate(r));
    expect(calls).toEqual([[1, 2, 3]]);
    expect(settled).toEqual([]); // not durable yet: nothing may be acked
    answer();
    await Promise.all(first);
    expect(settled).toEqual([1, 2, 3]);
    const later = batcher.record(record(4));
    await new Promise((r) => setImmediate(r));
    expect(calls).toEqual([[1, 2, 3], [4]]);
    answer();
    await later;
  });

  it('paces a busy worker to one batch per window, sends a lone check-in at once, and sends a full batch without waiting', async () => {
    let clock = 0;
    const calls: number[][] = [];
    const batcher = new CheckinBatcher(
      (records) => {
        calls.push(records.map((r) => r.seq));
        return Promise.resolve();
      },
      { windowMs: 25, maxBatch: 3, now: () => clock },
    );
    const turn = (): Promise<void> => new Promise((r) => setImmediate(r));
    // Idle: the first check-in goes at the end of its turn.
    const first = batcher.record(record(1));
    await turn();
    expect(calls).toEqual([[1]]);
    await first;
    // Within the window: held until the window ends, gathering the rest.
    clock = 5;
    const held = [batcher.record(record(2)), batcher.record(record(13))];
    await turn();
    expect(calls).toEqual([[1]]);
    await Promise.all(held); // the timer for the rest of the window (20 ms real time) sent them
    expect(calls).toEqual([[1], [2, 13]]);
    // A full batch goes at once, even inside the window.
    clock = 6;
    const full = [20, 21, 22].map((seq) => batcher.record(record(seq)));
    expect(calls).toEqual([[1], [2, 13], [20, 21, 22]]);
    await Promise.all(full);
    // Long after the last batch: at once again.
    clock = 1000;
    const late = batcher.record(record(30));
    await turn();
    expect(calls.at(-1)).toEqual([30]);
    await late;
    expect(batcher.stats).toEqual({ batches: 4, checkins: 7 });
  });

  it("widens each worker's window as the workers share the box's check-ins, within its bounds", () => {
    const windows = [1, 2, 4, 5, 6, 8, 9, 16, 64].map((n) => workerCheckinBatching(n).windowMs);
    expect(windows).toEqual([10, 10, 10, 12.5, 15, 20, 20, 20, 20]);
    expect(Math.min(...windows)).toBe(WORKER_CHECKIN_WINDOW_MS);
    expect(Math.max(...windows)).toBe(WORKER_MAX_CHECKIN_WINDOW_MS);
    expect(workerCheckinBatching(0).windowMs).toBe(WORKER_CHECKIN_WINDOW_MS); // no workers: never used, but sane
  });

  it('fails every check-in of a batch whose call failed, so their channels close and the agents resend', async () => {
    const batcher = new CheckinBatcher(() => Promise.reject(new RollcallError('RPC_CHANNEL_CLOSED', 'the IPC channel closed')));
    const results = await Promise.allSettled([batcher.record(record(1)), batcher.record(record(2))]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(batcher.stats).toEqual({ batches: 1, checkins: 2 });
  });
});
