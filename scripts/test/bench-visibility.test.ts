import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readSection } from '../bench-sections.js';
import { runHealthBench } from '../bench-visibility.js';

describe('health benchmark mode', () => {
  it('writes its own section with the three measurements and keeps the others', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'rollcall-bench-health-'));
    try {
      const out = path.join(dir, 'benchmarks.md');
      await fs.writeFile(out, '# Benchmarks\n\n<!-- bench:sync:start -->\nsync stays\n<!-- bench:sync:end -->\n');
      const lines: string[] = [];
      const code = await runHealthBench(['--customers', '50', '--devices', '200', '--out', out], { out: (t) => lines.push(t), err: (t) => lines.push(t) });
      expect(code).toBe(0);
      const doc = await fs.readFile(out, 'utf8');
      expect(readSection(doc, 'sync')).toBe('sync stays');
      const section = readSection(doc, 'health')!;
      expect(section).toMatch(/`portcheck` of 10 ports, all answering .* \| \d+(\.\d)? ms \| < 2000 ms \| ✓ \|/);
      expect(section).toMatch(/one silent .*TLS_HANDSHAKE_FAILED/s);
      expect(section).toMatch(/health report, 50 customers and 200 devices \| \d+(\.\d)? ms \| < 200 ms \|/);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
