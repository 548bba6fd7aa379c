/**
 * Building step results: timing from a monotonic clock, texts bounded so
 * that a report always fits the report route's limits.
 */
import { performance } from 'node:perf_hooks';
import { MAX_PORTCHECK_TEXT } from './report-api.js';
import type { PortcheckFailure, PortcheckStep, StepResult } from './types.js';

/** Cuts a text to the report limit (with an ellipsis), on one line. */
export function clip(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length <= MAX_PORTCHECK_TEXT ? line : `${line.slice(0, MAX_PORTCHECK_TEXT - 1)}…`;
}

/** A stopwatch for one step. */
export interface StepTimer {
  /** A passed step. */
  pass(detail: string): StepResult;
  /** A failed step with its class. */
  fail(failure: PortcheckFailure, detail: string): StepResult;
  /** Milliseconds since the step started. */
  elapsed(): number;
}

/** Starts timing a step. */
export function startStep(step: PortcheckStep): StepTimer {
  const started = performance.now();
  const elapsed = (): number => Math.round(performance.now() - started);
  return {
    pass: (detail) => ({ step, ok: true, ms: elapsed(), detail: clip(detail) }),
    fail: (failure, detail) => ({ step, ok: false, ms: elapsed(), detail: clip(detail), failure }),
    elapsed,
  };
}

/** The error code of a thrown value, or '' when it has none. */
export function errorCode(err: unknown): string {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : '';
}

/** A one-line description of an error with its code. */
export function errorText(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const code = errorCode(err);
  return code && !message.includes(code) ? `${message} (${code})` : message;
}
