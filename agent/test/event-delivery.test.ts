import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { captureLogger, Harness, waitFor } from '../../test/support/harness.js';
import { EventDelivery } from '../event-delivery.js';
import { Outbox } from '../outbox.js';

const h = new Harness();
afterEach(() => h.cleanup());

async function outbox(n: number): Promise<Outbox> {
  const box = await Outbox.open(path.join(await h.tempDir(), 'outbox.log'));
  h.defer(() => box.close());
  await Promise.all(Array.from({ length: n }, (_, i) => box.append('synthetic', { n: i })));
  return box;
}

describe('event delivery', () => {
  it('sends in order, one frame in flight, at most 500 events per frame, and forgets only what was acknowledged', async () => {
    const box = await outbox(1200);
    const frames: { seqs: number[] }[] = [];
    const d = new EventDelivery(box, (f) => frames.push({ seqs: (JSON.parse(f) as { events: { seq: number }[] }).events.map((e) => e.seq) }) > 0, captureLogger().log, 5000, () => undefined, 0);
    h.defer(() => d.stop());
    await d.start(0);
    expect(frames).toHaveLength(1);
    expect(frames[0]!.seqs[0]).toBe(1);
    expect(frames[0]!.seqs).toHaveLength(500);
    d.acked(500);
    await waitFor(() => frames.length === 2, 'the second frame');
    expect(frames[1]!.seqs[0]).toBe(501);
    expect(box.stats().pending).toBe(700);
    d.acked(1000);
    await waitFor(() => frames.length === 3, 'the third frame');
    expect(frames[2]!.seqs).toEqual(Array.from({ length: 200 }, (_, i) => 1001 + i));
  });

  it('spaces frames to stay inside the server frame budget', async () => {
    const box = await outbox(3);
    const sentAt: number[] = [];
    const d = new EventDelivery(box, () => sentAt.push(Date.now()) > 0, captureLogger().log, 5000, () => undefined, 150);
    h.defer(() => d.stop());
    await d.start(0);
    d.acked(3);
    await box.append('synthetic', { n: 4 });
    await waitFor(() => sentAt.length === 2, 'the second frame');
    expect(sentAt[1]! - sentAt[0]!).toBeGreaterThanOrEqual(140);
  });

  it('reports a stalled channel when a frame is not acknowledged in time', async () => {
    const box = await outbox(2);
    const stalls: string[] = [];
    const d = new EventDelivery(box, () => true, captureLogger().log, 50, (m) => stalls.push(m), 0);
    h.defer(() => d.stop());
    await d.start(0);
    await waitFor(() => stalls.length === 1, 'the stall');
    expect(stalls[0]).toBe('events up to 2 were not acknowledged within 50 ms');
  });
});
