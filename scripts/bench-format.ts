/** Number formatting shared by the bench's console table and its Markdown report. */
import type { Spread } from './bench-compare.js';

/** A number with sensible precision for a table. */
export function formatValue(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const abs = Math.abs(v);
  if (abs >= 100) return Math.round(v).toLocaleString('en-US');
  if (abs >= 10) return v.toFixed(1);
  if (abs >= 1) return v.toFixed(2);
  return v.toFixed(3);
}

/** A median, with the range of the repetitions when there are several. */
export function formatSpread(s: Spread): string {
  return s.runs > 1 ? `${formatValue(s.median)} (${formatValue(s.min)}–${formatValue(s.max)})` : formatValue(s.median);
}
