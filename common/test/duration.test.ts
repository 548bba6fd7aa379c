import { describe, expect, it } from 'vitest';
import { parseDuration } from '../duration.js';

describe('durations', () => {
  it('parses seconds, minutes, hours, days and weeks', () => {
    expect(parseDuration('90s')).toBe(90_000);
    expect(parseDuration('30m')).toBe(1_800_000);
    expect(parseDuration('12h')).toBe(43_200_000);
    expect(parseDuration(' 7d ')).toBe(604_800_000);
    expect(parseDuration('2w')).toBe(1_209_600_000);
  });

  it('refuses other forms with a sentence that shows the accepted ones', () => {
    for (const bad of ['', '7', 'd', '-1d', '1.5h', '7 days', '0s']) {
      expect(() => parseDuration(bad), bad).toThrow(/duration/);
    }
  });
});
