import { describe, expect, it } from 'vitest';
import { waitFor } from '../../test/support/harness.js';
import { HelloDeadlines } from '../hello-deadlines.js';

describe('hello deadlines', () => {
  it('tells every channel once, in the order the channels opened, and then holds none', async () => {
    const told: string[] = [];
    const deadlines = new HelloDeadlines(20);
    for (const name of ['a', 'b', 'c']) deadlines.add({ helloOverdue: () => told.push(name) });
    expect(deadlines.pending).toBe(3);
    await waitFor(() => (told.length === 3 ? true : undefined), 'three deadlines passed', 5000);
    expect(told).toEqual(['a', 'b', 'c']);
    expect(deadlines.pending).toBe(0);
    // A channel added after the queue ran empty gets its own deadline.
    deadlines.add({ helloOverdue: () => told.push('d') });
    await waitFor(() => (told.length === 4 ? true : undefined), 'the late deadline passed', 5000);
    expect(told).toEqual(['a', 'b', 'c', 'd']);
  });

  it('tells nobody before the clock says the deadline passed, and waits again for the rest', async () => {
    let now = 1000;
    let clockReads = 0;
    const told: string[] = [];
    const deadlines = new HelloDeadlines(10, () => {
      clockReads += 1;
      return now;
    });
    deadlines.add({ helloOverdue: () => told.push('early') });
    now = 1005;
    deadlines.add({ helloOverdue: () => told.push('late') });
    // The timer fires in real time, but this clock stands still: nothing is due yet.
    await waitFor(() => (clockReads >= 3 ? true : undefined), 'the timer fired once', 5000);
    expect(told).toEqual([]);
    now = 1010;
    await waitFor(() => (told.length === 1 ? true : undefined), 'the first deadline passed', 5000);
    expect(told).toEqual(['early']);
    expect(deadlines.pending).toBe(1);
    now = 1015;
    await waitFor(() => (told.length === 2 ? true : undefined), 'the second deadline passed', 5000);
    expect(told).toEqual(['early', 'late']);
  });

  it('keeps going across many channels, dropping the ones it told', async () => {
    const deadlines = new HelloDeadlines(5);
    let told = 0;
    for (let i = 0; i < 3000; i += 1) deadlines.add({ helloOverdue: () => (told += 1) });
    await waitFor(() => (told === 3000 ? true : undefined), 'every deadline passed', 10_000);
    expect(deadlines.pending).toBe(0);
  });
});
