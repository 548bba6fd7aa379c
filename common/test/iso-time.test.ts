import { describe, expect, it } from 'vitest';
import { isoTime } from '../iso-time.js';

describe('isoTime', () => {
  it('matches Date.prototype.toISOString across the whole range of dates', () => {
    const samples = [
      0, 1, -1, 999, 1000, Date.UTC(2026, 10, 21, 4, 11, 34, 5), Date.UTC(1999, 11, 31, 23, 59, 59, 999), Date.UTC(2000, 1, 29, 12),
      Date.UTC(9999, 11, 31, 23, 59, 59, 999), Date.UTC(10000, 0, 1), Date.UTC(0, 0, 1) - 86_400_000 * 366, Date.UTC(-1, 0, 1),
      -62198755200000, 8.64e15, -8.64e15,
    ];
    for (let i = 0; i < 2000; i += 1) samples.push(Math.round((i * 7919 * 86_400_013) % 8.64e15) * (i % 2 ? -1 : 1));
    for (const ms of samples) expect(isoTime(ms), String(ms)).toBe(new Date(ms).toISOString());
    const d = new Date(Date.UTC(2030, 0, 2, 3, 4, 5, 6));
    expect(isoTime(d)).toBe(d.toISOString());
    expect(isoTime()).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  });

  it('throws a RangeError for an invalid time, as toISOString does', () => {
    for (const bad of [NaN, Infinity, -Infinity, 8.64e15 + 1, new Date('not a date')]) {
      expect(() => isoTime(bad)).toThrow(RangeError);
      expect(() => isoTime(bad)).toThrow('Invalid time value');
    }
  });
});
