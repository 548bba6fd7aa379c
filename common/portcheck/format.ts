/**
 * The human form of a port-check report, shared by `rollcall portcheck`
 * and `rollcall-agent diagnose`: one block per port, one line per step
 * (✓/✗, milliseconds, what was seen), and for a failure its class and
 * the remedy.
 */
import type { PortcheckReport, PortResult } from './types.js';

function portBlock(p: PortResult): string[] {
  const need = p.required ? 'required' : 'optional';
  const verdict = p.ok ? 'ok' : `FAILED: ${p.failure?.class ?? 'unknown'}`;
  const lines = [`port ${p.port} (${p.role}, ${need}): ${verdict}`];
  for (const s of p.steps) {
    const mark = s.ok ? '✓' : '✗';
    const cls = s.failure ? `  [${s.failure}]` : '';
    lines.push(`  ${mark} ${s.step.padEnd(9)} ${`${s.ms} ms`.padStart(8)}  ${s.detail}${cls}`);
  }
  if (p.failure) lines.push(`    remedy: ${p.failure.remedy}`);
  return lines;
}

/** Renders a report for people. */
export function formatReport(report: PortcheckReport): string {
  const failed = report.ports.filter((p) => !p.ok);
  const requiredFailed = failed.filter((p) => p.required).length;
  const summary = report.ok
    ? failed.length === 0
      ? `all ${report.ports.length} port${report.ports.length === 1 ? '' : 's'} passed`
      : `required ports passed; ${failed.length} optional port${failed.length === 1 ? '' : 's'} failed`
    : `${requiredFailed} required port${requiredFailed === 1 ? '' : 's'} failed`;
  const addresses = report.addresses.length > 0 ? ` (${report.addresses.join(', ')})` : '';
  const head = `${report.host}${addresses}: ${report.ok ? 'OK' : 'FAILED'}, ${summary} in ${report.durationMs} ms`;
  return [head, ...report.ports.flatMap((p) => ['', ...portBlock(p)])].join('\n');
}
