/**
 * `isoTime(ms)`: the same string as `new Date(ms).toISOString()`, made from
 * the UTC fields only.
 *
 * Why not toISOString: in Node 20's V8, Date.prototype.toISOString looks up
 * the local time zone's display name through ICU on its way, which pages in
 * some 2.5 MiB of ICU's data from the executable, and they stay resident. The
 * agent writes timestamps on every check-in, so it uses this instead (see
 * docs/agent.md, "Memory and CPU").
 */

const pad = (n: number, width: number): string => String(n).padStart(width, '0');

/** `new Date(ms).toISOString()`, without ICU. Throws RangeError for an invalid time, as toISOString does. */
export function isoTime(ms: number | Date = Date.now()): string {
  const d = ms instanceof Date ? ms : new Date(ms);
  const t = d.getTime();
  if (Number.isNaN(t)) throw new RangeError('Invalid time value');
  const y = d.getUTCFullYear();
  const year = y >= 0 && y <= 9999 ? pad(y, 4) : (y < 0 ? '-' : '+') + pad(Math.abs(y), 6);
  return `${year}-${pad(d.getUTCMonth() + 1, 2)}-${pad(d.getUTCDate(), 2)}T${pad(d.getUTCHours(), 2)}:${pad(d.getUTCMinutes(), 2)}:${pad(d.getUTCSeconds(), 2)}.${pad(d.getUTCMilliseconds(), 3)}Z`;
}
