/**
 * Renders the connect and check-in section of docs/benchmarks.md from one
 * bench run: the machine, the method, the comparison table with the 1.5x
 * goal, the raw samples, and notes on what the numbers mean. Pure:
 * everything it prints comes from its input. bench-sections.ts puts it
 * into the file.
 */
import type { ComparisonRow } from './bench-compare.js';
import { formatSpread, formatValue } from './bench-format.js';
import type { ForeignLoad, MachineFacts } from './bench-machine.js';
import type { TargetResult } from './bench-measure.js';
import { costNotes } from './bench-notes.js';

/** Everything the report is made of. */
export interface BenchReportInput {
  readonly startedAt: Date;
  readonly machine: MachineFacts;
  /** CPU other processes took during the run, when known. */
  readonly foreign?: ForeignLoad;
  readonly args: { readonly agents: number; readonly checkins: number; readonly concurrency: number; readonly repeat: number };
  /** Every repetition of each side, in the order they ran. */
  readonly ours: readonly TargetResult[];
  readonly bare: readonly TargetResult[];
  readonly rows: readonly ComparisonRow[];
  /** True when the servers ran under the CPU profiler (numbers skewed). */
  readonly profiled?: boolean;
}

function foreignLine(f: ForeignLoad): string {
  const what =
    `- Other processes on the machine used ${(f.otherCpuMs / 1000).toFixed(1)} CPU-seconds during the ` +
    `${(f.wallMs / 1000).toFixed(0)} s of measurement (${(f.share * 100).toFixed(0)}% of the machine)`;
  return f.share > 0.05 ? `${what}: the wall-clock rows (round trips per second, latency, connect time) are slower than on an idle machine.` : `${what}.`;
}

function tableRow(r: ComparisonRow): string {
  const better = r.better === 'lower' ? 'lower is better' : 'higher is better';
  const goal = r.goal === undefined ? '(info)' : `${r.met ? '✓' : '✗'} ≤ ${r.goal}x`;
  return `| ${r.metric} (${r.unit}, ${better}) | ${formatSpread(r.ours)} | ${formatSpread(r.bare)} | ${r.costRatio.toFixed(2)}x | ${goal} |`;
}

function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

function rawLine(r: TargetResult, run: number): string {
  const s = r.samples;
  const counters = Object.entries(s.afterCheckins.counters)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  return (
    `| ${r.kind === 'ours' ? 'Rollcall' : 'bare ws+https'} | ${run} | ${mib(s.before.rssBytes)} | ${mib(s.afterConnect.rssBytes)} ` +
    `| ${mib(s.afterCheckins.rssBytes)} | ${(r.connectWallMs / 1000).toFixed(1)} s | ${(r.checkinWallMs / 1000).toFixed(2)} s ` +
    `| ${formatValue(r.roundTripsPerSec)} | ${formatValue(r.rttP99Ms)} ms | ${formatValue(r.rttMaxMs)} ms | ${counters || '–'} |`
  );
}

function rawTable(input: BenchReportInput): string[] {
  const lines = [
    '| Server | Run | RSS before | RSS after connect | RSS after check-ins | connect phase | check-in phase | round trips/s | p99 | slowest | counters |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
  ];
  for (let i = 0; i < input.args.repeat; i += 1) {
    const pair = i % 2 === 0 ? [input.ours[i], input.bare[i]] : [input.bare[i], input.ours[i]];
    for (const r of pair) if (r) lines.push(rawLine(r, i + 1));
  }
  return lines;
}

function methodLines(input: BenchReportInput, gcForced: boolean): string[] {
  const { args } = input;
  return [
    '- Each server runs in its own child process (`node --expose-gc dist/scripts/bench-targets.js ours|bare`) and ' +
      "reports its own `process.cpuUsage()` (user + system, all threads: SQLite's worker thread counts) and " +
      `\`process.memoryUsage().rss\`${gcForced ? ' after a forced full GC' : ''} over IPC, sampled before connecting, after all ` +
      'agents are connected, and after the check-in phase. Before each sample Rollcall finishes the storage writes it ' +
      'has queued, so a phase pays for its own writes; the forced GC is left out of the CPU of each phase.',
    '- **Rollcall** is the full server from `buildServer` (agent and console listeners, pino at `warn`, SQLite with the ' +
      'default `synchronous = FULL`), with a pre-made CA and server certificate in its data directory and one device ' +
      'row per agent certificate inserted before it starts. Only its protective limits are raised out of the way ' +
      '(frame budget, hello timeout, ping interval).',
    '- **Bare** is `https.createServer` (same key, chain, CA, `requestCert`, `rejectUnauthorized`, TLS ≥ 1.2) with a ' +
      '`ws` `WebSocketServer` (`maxPayload` 64 KiB, no compression) that answers `hello` with a welcome-shaped JSON ' +
      'and `checkin` with `{type:"ack",seq}` (JSON.parse + JSON.stringify, nothing else).',
    `- **Clients** run in the driver process: one \`ws\` client per agent with its own certificate ` +
      '(`tls.createSecureContext` per certificate, a full handshake each, no session resumption), ' +
      `${args.concurrency} connects in flight; each sends \`hello\` and waits for \`welcome\`. Then every agent makes ` +
      `${args.checkins} sequential check-in round trips, all agents at once; each round trip is timed with ` +
      '`process.hrtime.bigint()`. Throughput is all round trips ÷ the wall time of that phase; p99 is over all of them.',
    '- CPU per connect = server CPU during the connect phase ÷ agents. RSS per agent = (RSS after connect − RSS ' +
      'before) ÷ agents.',
    `- An untimed warm-up pass (up to 500 agents against a throwaway bare server) comes first: in trials, whichever ` +
      "server was measured first paid for the clients' JIT warm-up (some 30% lower throughput). Then the measurement " +
      `is repeated ${args.repeat} time(s), alternating which server goes first (Rollcall first in odd runs); the table ` +
      'shows the median of the runs with their range in brackets, and the ratio of the medians. Loopback (127.0.0.1) only.',
  ];
}

/** Renders the connect and check-in section (without its markers). */
export function renderCheckinSection(input: BenchReportInput): string {
  const { machine: m, args, rows } = input;
  const goalRows = rows.filter((r) => r.goal !== undefined);
  const met = goalRows.filter((r) => r.met).length;
  const gcForced = [...input.ours, ...input.bare].every((r) => r.samples.before.gcForced);
  return [
    '## Connect and check-in: Rollcall against bare ws+https',
    '',
    `Rollcall's agent listener against a bare \`ws\` + \`https\` mutual-TLS echo server, measured in the same run ` +
      `with the same certificates. Goal: within ${goalRows[0]?.goal ?? 1.5}x of bare on each of the first four metrics. ` +
      `**${met} of ${goalRows.length} goals met.**`,
    '',
    ...(input.profiled ? ['**This run profiled both servers (`--profile`); the profiler slows them, so do not quote these numbers.**', ''] : []),
    '### Machine',
    '',
    `- ${m.cpuCount} × ${m.cpuModel}, ${(m.totalMemoryBytes / 1024 ** 3).toFixed(1)} GiB memory, ${m.os}`,
    `- Node ${m.nodeVersion}`,
    `- Run started ${input.startedAt.toISOString()}`,
    ...(input.foreign ? [foreignLine(input.foreign)] : []),
    '',
    '### Result',
    '',
    `${args.agents} agents, ${args.checkins} sequential check-ins each, ${args.repeat} run(s) of each server.`,
    '',
    '| Metric | Rollcall | bare ws+https | ratio ours/bare¹ | Goal |',
    '| --- | ---: | ---: | ---: | --- |',
    ...rows.map(tableRow),
    '',
    '¹ For round trips per second, where higher is better, the ratio is bare/ours instead, so that in every row ' +
      'the ratio says how many times worse Rollcall is: above 1 is worse, below 1 is better, and the goal is at most ' +
      '1.5x. Rows marked "(info)" have no goal; they help explain the others.',
    '',
    'Raw samples of the server processes, in the order they ran:',
    '',
    ...rawTable(input),
    '',
    '### Method',
    '',
    ...methodLines(input, gcForced),
    '',
    '### Notes',
    '',
    '- All bench agent certificates share **one RSA-2048 key pair** (each has its own serial and device id). Issuing ' +
      'costs ~4 ms per certificate; a fresh key each would only slow the setup. Certificates are cached in `.bench-cache/`.',
    `- Client and server **share the machine's ${m.cpuCount} cores**: the clients do as much TLS work per handshake as ` +
      'the server, so wall-clock numbers (connect time, round trips per second, latency) are bounded by the ' +
      'client side as much as by the server. CPU and RSS are measured inside the server process and do not depend on it.',
    ...costNotes(rows, input.ours),
  ].join('\n');
}
