import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import fs from 'node:fs';
import { CHRT_PATHS, currentThreadId, LOWEST_NICE, lowerThreadPriority, SCHED_IDLE, threadNice, threadPolicy, useIdlePolicy, type PolicyOutcome, type PriorityOutcome } from '../thread-priority.js';

const linux = process.platform === 'linux';

/**
 * Runs lowerThreadPriority in a fresh worker thread once per value, in
 * order; resolves with the last outcome and the thread's nice value read
 * back from procfs.
 */
function lowerInWorker(...nices: number[]): Promise<{ outcome: PriorityOutcome; readBack: number | undefined }> {
  const source = new URL('../thread-priority.ts', import.meta.url).href;
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    import('tsx/esm/api').then((tsx) => { tsx.register(); return import(workerData.source); }).then((m) => {
      let outcome;
      for (const nice of workerData.nices) outcome = m.lowerThreadPriority(nice);
      parentPort.postMessage({ outcome, readBack: outcome.applied ? m.threadNice(outcome.threadId) : undefined });
    });`;
  const worker = new Worker(code, { eval: true, workerData: { source, nices } });
  return new Promise((resolve, reject) => {
    worker.once('message', (m: { outcome: PriorityOutcome; readBack: number | undefined }) => {
      void worker.terminate();
      resolve(m);
    });
    worker.once('error', reject);
  });
}

/** Runs useIdlePolicy in a fresh worker thread; resolves with its outcome and the thread's policy read back from procfs. */
function idleInWorker(): Promise<{ outcome: PolicyOutcome; readBack: number | undefined }> {
  const source = new URL('../thread-priority.ts', import.meta.url).href;
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    import('tsx/esm/api').then((tsx) => { tsx.register(); return import(workerData.source); }).then((m) => {
      const outcome = m.useIdlePolicy();
      parentPort.postMessage({ outcome, readBack: outcome.applied ? m.threadPolicy(outcome.threadId) : undefined });
    });`;
  const worker = new Worker(code, { eval: true, workerData: { source } });
  return new Promise((resolve, reject) => {
    worker.once('message', (m: { outcome: PolicyOutcome; readBack: number | undefined }) => {
      void worker.terminate();
      resolve(m);
    });
    worker.once('error', reject);
  });
}

describe('thread priority', () => {
  it.runIf(linux)('knows the calling thread: the main thread is the process itself', () => {
    expect(currentThreadId()).toBe(process.pid);
  });

  it.runIf(linux)('lowers the priority of the calling worker thread alone, not of the process', async () => {
    const before = os.getPriority();
    const { outcome, readBack } = await lowerInWorker(LOWEST_NICE);
    expect(outcome).toMatchObject({ applied: true, nice: LOWEST_NICE });
    if (!outcome.applied) return;
    expect(outcome.threadId).not.toBe(process.pid);
    expect(readBack).toBe(LOWEST_NICE);
    expect(os.getPriority()).toBe(before);
    expect(threadNice(process.pid)).toBe(before);
  });

  it.runIf(linux)('never raises a priority: a thread already lower keeps its value', async () => {
    const { outcome, readBack } = await lowerInWorker(LOWEST_NICE, 5);
    expect(outcome).toMatchObject({ applied: true, nice: LOWEST_NICE });
    expect(readBack).toBe(LOWEST_NICE);
  });

  it('refuses a nice value outside 0..19 without touching anything', () => {
    const before = os.getPriority();
    for (const bad of [-1, 20, 1.5, Number.NaN]) {
      const outcome = lowerThreadPriority(bad);
      expect(outcome.applied).toBe(false);
      if (!outcome.applied) expect(outcome.reason).toContain('from 0 to 19');
    }
    expect(os.getPriority()).toBe(before);
  });

  it('says why, and changes nothing, where the system has no per-thread priorities', () => {
    const before = os.getPriority();
    // As on a system without /proc/thread-self (not Linux), where the thread id cannot be found.
    expect(lowerThreadPriority(19, () => undefined)).toEqual({ applied: false, reason: 'this system has no per-thread priorities (no /proc/thread-self)' });
    expect(os.getPriority()).toBe(before);
  });

  it.runIf(linux)('puts the calling worker thread under SCHED_IDLE where chrt exists, and says so where it does not', async () => {
    const { outcome, readBack } = await idleInWorker();
    if (CHRT_PATHS.some((p) => fs.existsSync(p))) {
      expect(outcome).toMatchObject({ applied: true });
      if (!outcome.applied) return;
      expect(outcome.threadId).not.toBe(process.pid);
      expect(readBack).toBe(SCHED_IDLE);
    } else {
      expect(outcome).toMatchObject({ applied: false, reason: expect.stringContaining('no chrt') });
    }
    expect(threadPolicy(process.pid)).toBe(0); // the process's main thread keeps the normal policy
  });

  it('says why, and changes nothing, without chrt or without per-thread ids', () => {
    const before = threadPolicy(process.pid);
    expect(useIdlePolicy(currentThreadId, ['/no/such/chrt'])).toEqual({ applied: false, reason: 'no chrt to set the SCHED_IDLE policy with (looked for /no/such/chrt)' });
    expect(useIdlePolicy(() => undefined)).toEqual({ applied: false, reason: 'this system has no per-thread priorities (no /proc/thread-self)' });
    expect(threadPolicy(process.pid)).toBe(before);
  });
});
