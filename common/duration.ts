/**
 * Human durations such as `500ms`, `90s`, `30m`, `12h`, `7d` or `2w`.
 */
import { RollcallError } from './errors.js';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** Parses a duration into milliseconds; throws RollcallError `DURATION_INVALID`. */
export function parseDuration(text: string): number {
  const m = /^(\d{1,9})(ms|[smhdw])$/.exec(text.trim());
  if (!m) throw new RollcallError('DURATION_INVALID', `"${text}" is not a duration like 500ms, 90s, 30m, 12h, 7d or 2w`);
  const ms = Number(m[1]) * UNIT_MS[m[2]!]!;
  if (ms <= 0) throw new RollcallError('DURATION_INVALID', 'a duration must be greater than zero');
  return ms;
}
