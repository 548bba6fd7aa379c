/** Flag parsing shared by the bench's modes. */
import { usageError } from '../common/cli-support.js';

/** A whole-number flag from 1 to `max`, or `fallback` when absent; a usage error (with `usage`) otherwise. */
export function positiveInt(name: string, value: string | undefined, fallback: number, max: number, usage: string): number {
  if (value === undefined) return fallback;
  const n = /^\d+$/.test(value) ? Number(value) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > max) throw usageError(`--${name} must be a whole number from 1 to ${max} (got ${value})\n${usage}`);
  return n;
}
