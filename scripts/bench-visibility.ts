/**
 * `npm run bench -- health`: the two measurements of port and visibility
 * health. A port check of 10 real listeners (goal: under 2 s when all
 * answer; within the step timeout + 1 s when one stays silent), and the
 * health report for 10,000 customers and 100,000 devices (goal: under
 * 200 ms). Writes the `health` section of docs/benchmarks.md.
 */
import path from 'node:path';
import { parseCommandArgs, usageError, type CliIo } from '../common/cli-support.js';
import { benchHealth, type HealthBenchResult } from './bench-health.js';
import { describeMachine } from './bench-machine.js';
import { benchPortcheck, type PortcheckBenchResult } from './bench-portcheck.js';
import { writeSection } from './bench-sections.js';

/** Usage of the health mode. */
export const HEALTH_USAGE = 'usage: node dist/scripts/bench.js health [--customers 10000] [--devices 100000] [--out docs/benchmarks.md]';

const fmt = (ms: number): string => (ms >= 100 ? ms.toFixed(0) : ms.toFixed(1));
const mark = (ok: boolean): string => (ok ? '✓' : '✗');

function render(startedAt: Date, p: PortcheckBenchResult, hb: HealthBenchResult): string {
  const m = describeMachine();
  const silentBudget = p.stepTimeoutMs + 1000;
  return [
    '## Port checks and the health report',
    '',
    `_Written by \`npm run bench -- health\` on ${startedAt.toISOString()}: ${m.cpuCount} × ${m.cpuModel}, ${(m.totalMemoryBytes / 2 ** 30).toFixed(1)} GiB, ${m.os}, Node ${m.nodeVersion}._`,
    '',
    '| Measurement | Measured (median) | Goal | Met |',
    '| --- | ---: | ---: | --- |',
    `| \`portcheck\` of ${p.ports} ports, all answering (every step, WebSocket included) | ${fmt(p.allAnswerMs)} ms | < 2000 ms | ${mark(p.allAnswerOk && p.allAnswerMs < 2000)} |`,
    `| \`portcheck\` of ${p.ports} ports, one silent (step timeout ${p.stepTimeoutMs} ms) | ${fmt(p.oneSilentMs)} ms | < ${silentBudget} ms | ${mark(p.oneSilentMs < silentBudget)} |`,
    `| health report, ${hb.customers.toLocaleString('en-US')} customers and ${hb.devices.toLocaleString('en-US')} devices | ${fmt(hb.ms)} ms | < 200 ms | ${mark(hb.ms < 200)} |`,
    '',
    `Runs: all answering ${p.allAnswerRunsMs.map(fmt).join(', ')} ms; one silent ${p.oneSilentRunsMs.map(fmt).join(', ')} ms (the silent port is reported as \`${p.silentFailure ?? '?'}\`); health report ${hb.runsMs.map(fmt).join(', ')} ms (${fmt(hb.cpuMs)} ms CPU per build, SQLite's threads included; ${hb.observations.toLocaleString('en-US')} observations, ${hb.customersWithProblems} customers with problems; setup ${(hb.setupMs / 1000).toFixed(1)} s, not timed).`,
    '',
    '- **Port check**: 5 real Rollcall servers on 127.0.0.1 (agent and console listener each), checked by `runPortcheck` in one call: DNS, TCP, TLS against the CA pin, the identification probe, and on agent ports the WebSocket upgrade (refused for want of an agent certificate, which proves the listener). Ports are checked in parallel; each step is bounded. The "silent" port accepts TCP and never answers, the closest to dropped packets that stays on loopback: its TLS step has to run out its timeout.',
    '- **Health report**: the report builder over a temporary database filled with multi-row SQL: an MSP structure of the given size, one device row per device, agent sightings, and each device\'s latest probe of both ports (every 50th customer\'s network blocks the agent port, every 20th device fails alone, the restricted console port leaks to every 100th customer). Median of 5 builds after a warm-up.',
  ].join('\n');
}

/** Runs both measurements and writes the section; resolves with the exit code. */
export async function runHealthBench(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, {
    customers: { type: 'string' },
    devices: { type: 'string' },
    out: { type: 'string' },
    debug: { type: 'boolean' },
  });
  if (positionals.length > 0) throw usageError(`unexpected argument "${positionals[0]}"\n${HEALTH_USAGE}`);
  const count = (name: string, v: string | undefined, d: number): number => {
    if (v === undefined) return d;
    if (!/^\d+$/.test(v) || Number(v) < 1) throw usageError(`--${name} must be a positive whole number\n${HEALTH_USAGE}`);
    return Number(v);
  };
  const customers = count('customers', values.customers, 10_000);
  const devices = count('devices', values.devices, 100_000);
  const out = path.resolve(values.out ?? 'docs/benchmarks.md');
  const startedAt = new Date();
  io.out('port check: 10 ports on 5 real servers, then one silent port');
  const p = await benchPortcheck({ servers: 5, runs: 5, stepTimeoutMs: 1000 });
  io.out(`  all answering: ${fmt(p.allAnswerMs)} ms (ok: ${p.allAnswerOk}); one silent: ${fmt(p.oneSilentMs)} ms (${p.silentFailure})`);
  io.out(`health report: building ${customers} customers and ${devices} devices`);
  const hb = await benchHealth({ customers, devices });
  io.out(`  median ${fmt(hb.ms)} ms`);
  await writeSection(out, 'health', render(startedAt, p, hb));
  io.out(`wrote the health section of ${out}`);
  return 0;
}
