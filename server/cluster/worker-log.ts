/**
 * Agent workers log pino JSON lines to their stdout; the primary reads them
 * and logs each again through its own logger (level, message and fields
 * kept, the worker's slot added), so one logger sees the whole server
 * whatever its destination. Anything else a worker prints is logged as a
 * line of output.
 */
import type { Worker } from 'node:cluster';
import readline from 'node:readline';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';

type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';
const LEVELS: Record<number, Level> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };

/** Logs one line a worker printed. */
export function relogLine(log: Logger, line: string, stream: 'stdout' | 'stderr'): void {
  if (!line.trim()) return;
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    parsed = undefined;
  }
  if (typeof parsed !== 'object' || parsed === null || typeof (parsed as { level?: unknown }).level !== 'number') {
    log[stream === 'stderr' ? 'warn' : 'info']({ line: line.slice(0, 2000) }, `agent worker ${stream}`);
    return;
  }
  const { level, msg, time: _time, ...fields } = parsed as { level: number; msg?: string; time?: unknown } & Record<string, unknown>;
  log[LEVELS[level] ?? 'info'](fields, msg ?? '');
}

/** Reads a worker's stdout and stderr (forked with `silent: true`) into the primary's logger. */
export function forwardWorkerOutput(worker: Worker, log: Logger, slot: number): void {
  const child = log.child({ worker: slot });
  const follow = (stream: Readable | null, name: 'stdout' | 'stderr'): void => {
    if (!stream) return;
    readline.createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => relogLine(child, line, name));
  };
  follow(worker.process.stdout, 'stdout');
  follow(worker.process.stderr, 'stderr');
}
