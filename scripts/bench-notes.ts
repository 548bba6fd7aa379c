/**
 * The "what dominates" notes of docs/benchmarks.md. The numbers come from
 * the run; the attributions come from CPU profiles (`--profile`) and a heap
 * snapshot of the servers taken while developing the bench, and are worded
 * as such.
 */
import type { ComparisonRow } from './bench-compare.js';
import type { TargetResult } from './bench-measure.js';
import { formatValue } from './bench-format.js';

function medianOf(rows: readonly ComparisonRow[], metric: string): { ours: number; bare: number } {
  const row = rows.find((r) => r.metric === metric);
  return { ours: row?.ours.median ?? NaN, bare: row?.bare.median ?? NaN };
}

/** Explains the connect CPU, the RSS per agent and the check-in costs, with this run's numbers. */
export function costNotes(rows: readonly ComparisonRow[], ours: readonly TargetResult[]): string[] {
  const cpu = medianOf(rows, 'Server CPU per connect');
  const rss = medianOf(rows, 'Server RSS per connected agent');
  const heap = medianOf(rows, 'Server heap growth per connected agent');
  const checkin = medianOf(rows, 'Server CPU per check-in');
  const first = ours[0];
  const batches = first?.samples.afterCheckins.counters.writerBatches;
  return [
    `- **Connect CPU is dominated by the mutual-TLS handshake**, which both servers pay alike. Bare spends ` +
      `${formatValue(cpu.bare)} ms per connect (ECDHE, a signature with the RSA-2048 server key, verifying the ` +
      `client's chain and CertificateVerify, the HTTP upgrade, the ws setup): ${((cpu.bare / cpu.ours) * 100).toFixed(0)}% ` +
      `of Rollcall's ${formatValue(cpu.ours)} ms. Rollcall's own ${formatValue(cpu.ours - cpu.bare)} ms on top comes ` +
      'from (per CPU profiles of the server) one SQLite read per agent before the upgrade (certificate serial → ' +
      'device with its group path, a statement prepared once on a read-only connection), the connect facts and ' +
      'sighting written on `hello` (batched, many agents per transaction), reading the peer certificate, the Ajv ' +
      'validation of `hello`, the session, and the garbage of all these (V8 collects it on its background threads).',
    `- **RSS per agent is dominated by the TLS connection itself**: bare holds ${formatValue(rss.bare)} KiB per agent, ` +
      `of which only ${formatValue(heap.bare)} KiB is V8 heap; the rest is native (OpenSSL's per-connection state and ` +
      `buffers, the socket). Rollcall adds ${formatValue(rss.ours - rss.bare)} KiB, ${formatValue(heap.ours - heap.bare)} ` +
      'KiB of it on the heap: the session and its frame budget (the upgrade bypasses fastify and nothing a channel ' +
      'keeps closes over the upgrade request, so no request or reply object stays alive per socket). The remainder is native memory outside the V8 heap; ' +
      "SQLite's page cache and its worker threads' allocations are the likely share.",
    `- **Check-ins**: bare answers from memory; Rollcall validates each frame against the protocol schema, coalesces ` +
      'check-ins and acks each only once it is durable in the check-in journal, its own SQLite file (group commit' +
      (first && batches !== undefined ? `: ${batches} transactions for ${first.roundTrips} check-ins in the first run` : '') +
      `), which costs ${formatValue(checkin.ours - checkin.bare)} ms more server CPU per check-in ` +
      `(${formatValue(checkin.ours)} against ${formatValue(checkin.bare)} ms). The phase is closed-loop: every agent ` +
      'waits for its ack before sending the next, all agents at once, so the p99 is roughly the time to work through ' +
      "one wave of check-ins from every agent on both sides of the loopback, and Rollcall's acks leave in bursts, one " +
      'per committed batch, where bare answers as frames come. Queueing dominates the latency, not the cost of one ' +
      'message, and it varies a lot from run to run (see the ranges).',
  ];
}
