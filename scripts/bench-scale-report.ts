/**
 * Renders the `scale` section of docs/benchmarks.md from one scale bench
 * run (scripts/bench-scale.ts). Pure: every number comes from the input.
 */
import { formatValue } from './bench-format.js';
import type { MachineFacts } from './bench-machine.js';
import type { ScaleArgs } from './bench-scale.js';
import type { TargetKind } from './bench-target-process.js';
import type { LoadgenStats } from './loadgen.js';
import { restartWindowMs } from '../server/restart-spread.js';

/** One timeline point: agents connected (as the load generators count them) at a moment of the run. */
export interface TimelinePoint {
  /** Milliseconds since the server's first sample. */
  readonly tMs: number;
  readonly phase: 'full connect' | 'resumed connect' | 'steady' | 'storm';
  readonly connected: number;
  readonly serverRssBytes?: number;
}

/** Console API latency measured during a phase (ours only). */
export interface ConsoleLatency {
  readonly calls: number;
  readonly failures: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

/** The reconnect storm after a server restart. */
export interface StormResult {
  /** From the kill until the new process listened. */
  readonly restartMs: number;
  /** From the kill until every agent was back; undefined when they were not within the deadline. */
  readonly backWithinMs: number | undefined;
  readonly backAfterReadyMs: number | undefined;
  readonly connectedAtEnd: number;
  readonly clients: LoadgenStats;
  /** CPU of the restarted server from listening until all were back (or the deadline). */
  readonly serverCpuMs: number;
  readonly peakRssBytes: number;
  readonly rssAfterBytes: number;
  readonly console: ConsoleLatency | undefined;
}

/** Everything measured against one server. */
export interface ScaleResult {
  readonly kind: TargetKind;
  readonly agents: number;
  readonly full: { readonly wallMs: number; readonly cpuMsPerConnect: number; readonly clients: LoadgenStats };
  readonly resumed: { readonly wallMs: number; readonly cpuMsPerConnect: number; readonly clients: LoadgenStats };
  readonly memory: { readonly rssBeforeBytes: number; readonly rssAfterBytes: number; readonly rssPerAgentBytes: number; readonly heapPerAgentBytes: number };
  readonly steady: {
    readonly wallMs: number;
    readonly checkins: number;
    readonly unanswered: number;
    readonly cpuMs: number;
    /** What the server spends without check-ins (idle window's rate over this window's length). */
    readonly idleCpuMs: number;
    /** cpuMs minus idleCpuMs: the check-ins' own cost. */
    readonly checkinCpuMs: number;
    /** Server CPU over the window as a share of one core (0..). */
    readonly cpuShareOfCore: number;
    /** Check-ins' own CPU per check-in (idle subtracted). */
    readonly cpuMsPerCheckin: number;
    readonly p50Ms: number;
    readonly p99Ms: number;
    readonly maxMs: number;
    readonly eventLoopDelayMaxMs: number;
    readonly console: ConsoleLatency | undefined;
  };
  /** Check-ins at the rate the target fleet would make (fewer agents, shorter interval). */
  readonly fleetRate: {
    readonly intervalMs: number;
    readonly wallMs: number;
    readonly checkins: number;
    readonly unanswered: number;
    readonly cpuMs: number;
    readonly cpuShareOfCore: number;
    /** The idle window's CPU share (channels open, no check-ins). */
    readonly idleShareOfCore: number;
    readonly p50Ms: number;
    readonly p99Ms: number;
    readonly maxMs: number;
    readonly eventLoopDelayMaxMs: number;
    readonly console: ConsoleLatency | undefined;
  };
  readonly storm: StormResult;
  /** CPU of processes outside the bench (not the server, load generators or driver) per phase, as a share of the machine (0..1); undefined without /proc. */
  readonly foreign: PhaseForeignLoad;
  readonly timeline: readonly TimelinePoint[];
}

/** Other processes' share of the machine in each phase of a run. */
export interface PhaseForeignLoad {
  readonly full: number | undefined;
  readonly resumed: number | undefined;
  /** The idle, steady and fleet-rate windows together. */
  readonly steady: number | undefined;
  readonly storm: number | undefined;
}

/** What the section is made of. */
export interface ScaleReportInput {
  readonly startedAt: Date;
  readonly machine: MachineFacts;
  readonly openFileLimit: number | undefined;
  /** The run's flags, as parsed (`maxPending` only when the run set one). */
  readonly args: Pick<ScaleArgs, 'agents' | 'concurrency' | 'loadgens' | 'workers' | 'sources' | 'intervalSec' | 'steadySec' | 'stormTimeoutSec' | 'storm'> &
    Partial<Pick<ScaleArgs, 'maxPending'>>;
  readonly results: readonly ScaleResult[];
  /** Whole-machine busy time over the run (load generators, servers, driver and anything else). */
  readonly busy?: { readonly machineBusyMs: number; readonly wallMs: number; readonly cpuCount: number; readonly serversMeasuredCpuMs: number; readonly share: number };
}

/** The fleet size the issue's targets are stated for. */
export const TARGET_FLEET = 100_000;

const kb = (bytes: number): string => `${formatValue(bytes / 1024)}`;
const sec = (ms: number | undefined): string => (ms === undefined ? '–' : `${(ms / 1000).toFixed(1)}`);

interface Row {
  readonly metric: string;
  readonly ours: number | undefined;
  readonly bare: number | undefined;
  readonly show: (v: number) => string;
  /** Ratio ours/bare shown when both are there. */
  readonly ratio?: boolean;
  readonly goal?: string;
  /** Whether ours meets the goal, when there is one. */
  readonly met?: boolean;
}

function rowLine(r: Row): string {
  const cell = (v: number | undefined): string => (v === undefined || Number.isNaN(v) ? '–' : r.show(v));
  const ratio = r.ratio && r.ours !== undefined && r.bare !== undefined && r.bare > 0 ? `${(r.ours / r.bare).toFixed(2)}x` : '';
  const goal = r.goal === undefined ? '' : `${r.met === undefined ? '' : r.met ? '✓ ' : '✗ '}${r.goal}`;
  return `| ${r.metric} | ${cell(r.ours)} | ${cell(r.bare)} | ${ratio} | ${goal} |`;
}

function rows(ours: ScaleResult | undefined, bare: ScaleResult | undefined, n: number, intervalSec: number): Row[] {
  const o = ours;
  const b = bare;
  const memRatio = o && b && b.memory.rssPerAgentBytes > 0 ? o.memory.rssPerAgentBytes / b.memory.rssPerAgentBytes : undefined;
  const cpuRatio = o && b && b.full.cpuMsPerConnect > 0 ? o.full.cpuMsPerConnect / b.full.cpuMsPerConnect : undefined;
  return [
    {
      metric: 'RSS per connected agent (KiB)',
      ours: o?.memory.rssPerAgentBytes,
      bare: b?.memory.rssPerAgentBytes,
      show: kb,
      ratio: true,
      goal: '≤ 64 KiB and ≤ 1.15x',
      met: o ? o.memory.rssPerAgentBytes <= 64 * 1024 && (memRatio === undefined || memRatio <= 1.15) : undefined,
    },
    { metric: 'JS heap per connected agent (KiB)', ours: o?.memory.heapPerAgentBytes, bare: b?.memory.heapPerAgentBytes, show: kb, ratio: true },
    {
      metric: 'server CPU per full mTLS connect (ms)',
      ours: o?.full.cpuMsPerConnect,
      bare: b?.full.cpuMsPerConnect,
      show: formatValue,
      ratio: true,
      goal: '≤ 1.15x',
      met: cpuRatio === undefined ? undefined : cpuRatio <= 1.15,
    },
    { metric: 'server CPU per resumed connect (ms)', ours: o?.resumed.cpuMsPerConnect, bare: b?.resumed.cpuMsPerConnect, show: formatValue, ratio: true },
    { metric: 'resumed connects that did resume (%)', ours: o ? (100 * o.resumed.clients.resumedConnects) / n : undefined, bare: b ? (100 * b.resumed.clients.resumedConnects) / n : undefined, show: (v) => v.toFixed(0) },
    { metric: 'full connects, wall rate (agents/s)', ours: o ? n / (o.full.wallMs / 1000) : undefined, bare: b ? n / (b.full.wallMs / 1000) : undefined, show: formatValue },
    { metric: 'resumed connects, wall rate (agents/s)', ours: o ? n / (o.resumed.wallMs / 1000) : undefined, bare: b ? n / (b.resumed.wallMs / 1000) : undefined, show: formatValue },
    { metric: `steady state: server CPU, all of it (% of one core, ${n} agents)`, ours: o ? 100 * o.steady.cpuShareOfCore : undefined, bare: b ? 100 * b.steady.cpuShareOfCore : undefined, show: (v) => v.toFixed(2), ratio: true },
    {
      metric: `idle: server CPU with ${n} channels open, no check-ins (% of one core, a short sample)`,
      ours: o ? (100 * o.steady.idleCpuMs) / o.steady.wallMs : undefined,
      bare: b ? (100 * b.steady.idleCpuMs) / b.steady.wallMs : undefined,
      show: (v) => v.toFixed(2),
      ratio: true,
    },
    {
      metric: `steady state (${n} agents, one per ${intervalSec} s): server CPU per check-in, idle subtracted (ms; – when the idle sample was the larger)`,
      ours: o && o.steady.checkinCpuMs > 0 ? o.steady.cpuMsPerCheckin : undefined,
      bare: b && b.steady.checkinCpuMs > 0 ? b.steady.cpuMsPerCheckin : undefined,
      show: formatValue,
      ratio: true,
    },
    { metric: `steady state (${n} agents, one per ${intervalSec} s): ack p99 (ms)`, ours: o?.steady.p99Ms, bare: b?.steady.p99Ms, show: formatValue },
    { metric: `steady state (${n} agents, one per ${intervalSec} s): console API p99 (ms)`, ours: o?.steady.console?.p99Ms, bare: undefined, show: formatValue },
    {
      metric: `at the check-in rate of ${TARGET_FLEET.toLocaleString('en-US')} agents (${Math.round(TARGET_FLEET / intervalSec)}/s): server CPU, all of it (% of one core)`,
      ours: o ? 100 * o.fleetRate.cpuShareOfCore : undefined,
      bare: b ? 100 * b.fleetRate.cpuShareOfCore : undefined,
      show: (v) => v.toFixed(1),
      ratio: true,
      goal: '≤ 25% (includes the idle work of these channels)',
      met: o ? o.fleetRate.cpuShareOfCore <= 0.25 : undefined,
    },
    {
      metric: 'the same: server CPU per check-in, all of it (ms)',
      ours: o && o.fleetRate.checkins > 0 ? o.fleetRate.cpuMs / o.fleetRate.checkins : undefined,
      bare: b && b.fleetRate.checkins > 0 ? b.fleetRate.cpuMs / b.fleetRate.checkins : undefined,
      show: formatValue,
      ratio: true,
    },
    { metric: 'the same: ack p99 (ms)', ours: o?.fleetRate.p99Ms, bare: b?.fleetRate.p99Ms, show: formatValue, goal: '≤ 50 ms', met: o ? o.fleetRate.p99Ms <= 50 && o.fleetRate.unanswered === 0 : undefined },
    {
      metric: 'the same: console API p99 (ms)',
      ours: o?.fleetRate.console?.p99Ms,
      bare: undefined,
      show: formatValue,
      goal: '< 200 ms',
      met: o?.fleetRate.console ? o.fleetRate.console.p99Ms < 200 && o.fleetRate.console.failures === 0 : undefined,
    },
    {
      metric: 'storm: all agents back, seconds after the stop',
      ours: o?.storm.backWithinMs === undefined ? undefined : o.storm.backWithinMs / 1000,
      bare: b?.storm.backWithinMs === undefined ? undefined : b.storm.backWithinMs / 1000,
      show: (v) => v.toFixed(1),
      ratio: true,
      goal: '≤ 300 s',
      met: o ? o.storm.backWithinMs !== undefined && o.storm.backWithinMs <= 300_000 : undefined,
    },
    { metric: 'storm: server CPU from restart until all back (ms per agent)', ours: o ? o.storm.serverCpuMs / n : undefined, bare: b ? b.storm.serverCpuMs / n : undefined, show: formatValue, ratio: true },
    { metric: 'storm: agents that gave up', ours: o?.storm.clients.gaveUp, bare: b?.storm.clients.gaveUp, show: String, goal: '0', met: o ? o.storm.clients.gaveUp === 0 : undefined },
    { metric: 'storm: peak server RSS (MiB)', ours: o ? o.storm.peakRssBytes / 1048576 : undefined, bare: b ? b.storm.peakRssBytes / 1048576 : undefined, show: (v) => v.toFixed(0) },
    {
      metric: 'storm: console API p99 (ms) / failed calls',
      ours: o?.storm.console?.p99Ms,
      bare: undefined,
      show: (v) => `${formatValue(v)} / ${o?.storm.console?.failures ?? 0}`,
      goal: 'keeps answering',
      met: o?.storm.console ? o.storm.console.calls > o.storm.console.failures : undefined,
    },
  ];
}

function stormLine(r: ScaleResult, intervalSec: number): string {
  const c = r.storm.clients;
  const name = r.kind === 'ours' ? 'Rollcall' : 'bare ws+https';
  return (
    `- ${name}: new process listening ${sec(r.storm.restartMs)} s after the stop began; ` +
    (r.storm.backWithinMs === undefined ? `NOT all agents back within the deadline (${r.storm.connectedAtEnd}/${r.agents}); ` : `all ${r.agents} back ${sec(r.storm.backAfterReadyMs)} s after it listened; `) +
    `agents' attempts: ${c.resumedConnects} resumed and ${c.fullConnects} full TLS connects, ${c.shedBeforeTls} shed before TLS, ` +
    `${c.tcpRefused} refused by TCP (server not yet up), ${c.refused} refused after TLS, ${c.errors} other failures, ${c.retries} backoff waits, ` +
    `${c.retryHints} retry hints received; agents back sent ${c.returnCheckins} check-ins (at once after the welcome, then one per ${intervalSec} s), ${c.returnAcks} acked; ` +
    `RSS ${(r.storm.rssAfterBytes / 1048576).toFixed(0)} MiB afterwards.`
  );
}

/** The timeline of one server, one line per phase: "seconds into the phase: connected". */
function timelineLines(r: ScaleResult): string[] {
  const name = r.kind === 'ours' ? 'Rollcall' : 'bare ws+https';
  const out: string[] = [];
  for (const phase of ['full connect', 'resumed connect', 'storm'] as const) {
    const pts = r.timeline.filter((p) => p.phase === phase);
    if (pts.length === 0) continue;
    const start = pts[0]!.tMs - 1000;
    const step = Math.max(1, Math.ceil(pts.length / 24));
    const shown = pts.filter((_, i) => i % step === 0 || i === pts.length - 1);
    out.push(`- ${name}, ${phase}: ${shown.map((p) => `${((p.tMs - start) / 1000).toFixed(0)} s: ${p.connected}`).join(', ')}`);
  }
  return out;
}

/** The Markdown body of the scale section. */
export function renderScaleSection(input: ScaleReportInput): string {
  const ours = input.results.find((r) => r.kind === 'ours');
  const bare = input.results.find((r) => r.kind === 'bare');
  const n = input.args.agents;
  const m = input.machine;
  const lines = [
    '## Scale on one box (`npm run bench -- scale`)',
    '',
    `Run ${input.startedAt.toISOString()} with ${n.toLocaleString('en-US')} agents on ${m.cpuCount} × ${m.cpuModel}, ` +
      `${(m.totalMemoryBytes / 1024 ** 3).toFixed(0)} GiB, ${m.os}, Node ${m.nodeVersion}; open-file hard limit ${input.openFileLimit ?? 'unknown'} per process.`,
    '',
    (input.args.workers > 0
      ? `Each server ran as a primary process and ${input.args.workers} agent-port worker processes (node:cluster, sharing one listening ` +
        'socket; the kernel hands each connection to one worker): Rollcall with `--agent-workers`, the primary holding storage and the console; ' +
        'bare as the same number of bare servers. Every process reported its own CPU time and RSS, summed here; '
      : 'Each server ran in its own process and reported its own CPU time and RSS; ') +
      `${input.args.loadgens} load-generator process(es) ` +
      `simulated the agents (real mutual-TLS WebSocket clients, one certificate each, from ${input.args.sources} loopback source addresses), ` +
      `${input.args.concurrency} connects in flight` +
      (input.args.maxPending === undefined ? '' : `, Rollcall's admission limit set to ${input.args.maxPending} handshakes in flight`) +
      `. Load generators, servers and the driver share the same ${m.cpuCount} cores, so wall-clock rates ` +
      'are lower than a server alone would reach; the CPU-per-operation rows come from the server process\'s own accounting and are not.',
    '',
    '| metric | Rollcall | bare ws+https | ours/bare | goal (issue 7) |',
    '|---|---|---|---|---|',
    ...rows(ours, bare, n, input.args.intervalSec).map(rowLine),
    '',
    '### Reconnect storm',
    '',
    (input.args.storm === 'crash'
      ? 'The server process was killed (SIGKILL: no notice to agents) and started again on the same port and data directory. '
      : 'The server was stopped (Rollcall tells each agent when to come back: `SERVER_RESTARTING` with its own `retryAfterMs` over a ' +
        'window sized to the fleet; bare just closes) and its process started again on the same port and data directory. ') +
      'Agents reconnected as the real agent does: ' +
      `full-jitter exponential backoff (1 s base, 5 min cap, common/backoff.ts), the server's retry hint as a floor, never giving up; ` +
      `each offered the TLS session from its last connect. Deadline ${input.args.stormTimeoutSec} s.`,
    '',
    ...input.results.map((r) => stormLine(r, input.args.intervalSec)),
    '',
    '### Connected agents over time',
    '',
    'Agents connected as the load generators count them (welcome received), sampled once a second; seconds from the start of each phase ' +
      '(the storm: from the stop).',
    '',
    ...input.results.flatMap(timelineLines),
    '',
    '### Steady state',
    '',
    ...input.results.map(
      (r) =>
        `- ${r.kind === 'ours' ? 'Rollcall' : 'bare ws+https'}: ${r.steady.checkins} check-ins in ${sec(r.steady.wallMs)} s ` +
        `(${r.agents} agents at one per ${input.args.intervalSec} s, random phases), ${r.steady.unanswered} unanswered; ` +
        `ack p50 ${formatValue(r.steady.p50Ms)} ms, p99 ${formatValue(r.steady.p99Ms)} ms, slowest ${formatValue(r.steady.maxMs)} ms; ` +
        `server CPU ${formatValue(r.steady.cpuMs)} ms, of which ${formatValue(r.steady.idleCpuMs)} ms at the idle window's rate; longest event-loop delay ${formatValue(r.steady.eventLoopDelayMaxMs)} ms` +
        (r.steady.console ? `; console API: ${r.steady.console.calls} calls, p99 ${formatValue(r.steady.console.p99Ms)} ms, ${r.steady.console.failures} failed.` : '.'),
    ),
    ...input.results.map(
      (r) =>
        `- ${r.kind === 'ours' ? 'Rollcall' : 'bare ws+https'} at the check-in rate of ${TARGET_FLEET.toLocaleString('en-US')} agents ` +
        `(each of the ${r.agents} agents once per ${r.fleetRate.intervalMs} ms): ${r.fleetRate.checkins} check-ins in ${sec(r.fleetRate.wallMs)} s, ` +
        `${r.fleetRate.unanswered} unanswered; ack p50 ${formatValue(r.fleetRate.p50Ms)} ms, p99 ${formatValue(r.fleetRate.p99Ms)} ms, ` +
        `slowest ${formatValue(r.fleetRate.maxMs)} ms; server CPU ${formatValue(r.fleetRate.cpuMs)} ms; longest event-loop delay ` +
        `${formatValue(r.fleetRate.eventLoopDelayMaxMs)} ms` +
        (r.fleetRate.console ? `; console API: ${r.fleetRate.console.calls} calls, p99 ${formatValue(r.fleetRate.console.p99Ms)} ms, ${r.fleetRate.console.failures} failed.` : '.'),
    ),
  ];
  lines.push('', '### Notes', '', ...scaleNotes(input, ours, bare));
  if (input.busy) {
    const b = input.busy;
    lines.push(
      '',
      `The machine was ${((100 * b.machineBusyMs) / (b.wallMs * b.cpuCount)).toFixed(0)}% busy over the ${sec(b.wallMs)} s run ` +
        `(all processes: load generators, servers, driver, and other work on the machine).`,
    );
  }
  const foreignLines = input.results.flatMap((r) => {
    const f = r.foreign;
    const parts = (
      [
        ['full connects', f.full],
        ['resumed connects', f.resumed],
        ['idle and steady windows', f.steady],
        ['storm', f.storm],
      ] as const
    ).flatMap(([phase, share]) => (share === undefined ? [] : [`${phase} ${(share * 100).toFixed(0)} %`]));
    return parts.length === 0 ? [] : [`${r.kind === 'ours' ? 'Rollcall' : 'bare ws+https'}: ${parts.join(', ')}`];
  });
  if (foreignLines.length > 0) {
    lines.push(
      '',
      `Other work on the machine (processes outside this bench), as a share of all ${input.machine.cpuCount} cores in each phase: ${foreignLines.join('; ')}. ` +
        'It takes CPU from the servers and load generators: the wall-clock rates and the storm suffer, the CPU per operation much less.',
    );
  }
  return lines.join('\n');
}

/** What the numbers mean and where they fall short, with this run's numbers. */
export function scaleNotes(input: ScaleReportInput, ours: ScaleResult | undefined, bare: ScaleResult | undefined): string[] {
  const n = input.args.agents;
  const notes: string[] = [];
  const limit = input.openFileLimit;
  if (n < TARGET_FLEET) {
    notes.push(
      `- **${n.toLocaleString('en-US')} agents, not ${TARGET_FLEET.toLocaleString('en-US')}.** Every agent is one open socket in the server ` +
        `process and one in a load generator.` +
        (limit !== undefined && limit < TARGET_FLEET + 1000
          ? ` This machine allows ${limit.toLocaleString('en-US')} open files per process (hard limit, not raisable here), so one ` +
            `server process cannot hold ${TARGET_FLEET.toLocaleString('en-US')} channels; the rows below that name ` +
            `${TARGET_FLEET.toLocaleString('en-US')} agents are measured at that fleet's check-in rate, or projected, as each says.`
          : ''),
    );
  }
  if (ours) {
    const mem = (ours.memory.rssPerAgentBytes * TARGET_FLEET) / 1024 ** 3;
    notes.push(
      `- **Memory:** at the measured ${formatValue(ours.memory.rssPerAgentBytes / 1024)} KiB per agent, ` +
        `${TARGET_FLEET.toLocaleString('en-US')} agents need about ${mem.toFixed(1)} GiB beyond the idle server ` +
        `(of ${(input.machine.totalMemoryBytes / 1024 ** 3).toFixed(0)} GiB here), if it stays linear.`,
    );
    const idle = ours.fleetRate.idleShareOfCore;
    notes.push(
      `- **Idle cost grows with the fleet:** with ${n.toLocaleString('en-US')} channels open and no check-ins Rollcall used ` +
        `${(100 * idle).toFixed(2)}% of a core (bare ${bare ? (100 * bare.fleetRate.idleShareOfCore).toFixed(2) : '–'}%): the heartbeat visits ` +
        `every channel every 30 s (a thirtieth of them each second) and pings those quiet for 90 s (agents that check in on time never are), ` +
        `the check-in journal folds every second, health timers run; the idle window is a few seconds, so it is a sample of that ` +
        `periodic work, not its average. Scaled linearly to ${TARGET_FLEET.toLocaleString('en-US')} channels that is about ` +
        `${((100 * idle * TARGET_FLEET) / n).toFixed(0)}% of a core on top of the check-ins (an upper bound: the timers' fixed part does not grow). ` +
        'A fleet that was quiet long enough to be pinged (after a long connect phase) first checks in for one interval, as agents do, so the ' +
        "steady windows measure check-ins without those pings; the idle window's rate, pings included, is then more than the steady windows " +
        'carry, and the per-check-in figure with it subtracted a lower bound (the "all of it" rows are the whole cost).',
    );
    notes.push(
      `- **Check-ins at the fleet's rate:** ${n.toLocaleString('en-US')} agents checking in every ${ours.fleetRate.intervalMs} ms make the ` +
        `frames per second of ${TARGET_FLEET.toLocaleString('en-US')} agents at one per ${input.args.intervalSec} s: the same per-check-in work ` +
        '(validation, durable journal commit in batches, ack), not the same number of sockets. At one check-in per ' +
        `${input.args.intervalSec} s per agent the cost per check-in is higher (each one wakes the server alone and commits ` +
        'its own journal transaction), which is why the two per-check-in figures differ.',
    );
  }
  if (ours && bare) {
    notes.push(
      `- **Connect CPU:** a full mutual-TLS connect cost Rollcall ${formatValue(ours.full.cpuMsPerConnect)} ms against bare's ` +
        `${formatValue(bare.full.cpuMsPerConnect)} ms, resumed ${formatValue(ours.resumed.cpuMsPerConnect)} against ` +
        `${formatValue(bare.resumed.cpuMsPerConnect)} ms. The handshake is the same on both; on top Rollcall looks the ` +
        'device and its group path up in SQLite (two statements, ' +
        (input.args.workers > 0
          ? "each worker over its own read-only connection; then the worker's hellos of one event-loop turn go to the primary in one IPC call), "
          : 'through the one database queue and its worker thread), ') +
        'validates `hello`, builds the session (frame budget, child logger), writes connect facts and sightings (batched) ' +
        'and logs. Resumed connects make that fixed part a larger share.',
    );
  }
  notes.push(
    input.args.storm === 'crash'
      ? '- **Storm after a crash:** no notice reaches the agents; each retries once within a second, then (protocol 4) draws its ' +
          'delay from the fleet-sized window the server advertised in `welcome` (2.4 ms per agent, 5 s to 240 s), with admission ' +
          'before TLS shedding whatever still arrives at once; bare advertises nothing, so its agents follow their plain backoff ' +
          '(1 s, doubling, 5 min cap).'
      : '- **Storm after a restart:** Rollcall tells each agent when to come back (its share of a window of 2.4 ms per agent, ' +
          'starting 2 s after a restart as long as its last measured start and stop; an agent whose moment fails draws a new one from ' +
          'what is left of the window, at least an eighth of it), so the fleet returns at a pace the server can take instead of all at once; bare closes without notice and every agent ' +
          "retries within a second. `--storm crash` measures the unannounced case, where only admission and the agents' backoff pace it. " +
          'An agent that is back checks in at once and then once per interval, as the agent does (until session 7 the bench\'s agents ' +
          'stayed silent after their welcome, which cost the server less per agent back than real agents do).',
  );
  for (const r of input.results) {
    if (r.storm.backWithinMs !== undefined) continue;
    const c = r.storm.clients;
    const resumedPerSec = r.resumed.wallMs > 0 ? Math.round(r.agents / (r.resumed.wallMs / 1000)) : 0;
    const window = restartWindowMs(r.agents) / 1000;
    notes.push(
      `- **${r.kind === 'ours' ? 'Rollcall' : 'bare ws+https'}: the storm did not finish within ${input.args.stormTimeoutSec} s:** ` +
        `${r.storm.connectedAtEnd.toLocaleString('en-US')} of ${r.agents.toLocaleString('en-US')} agents were back at the deadline. ` +
        `The new process listened ${sec(r.storm.restartMs)} s after the stop began; ${c.tcpRefused.toLocaleString('en-US')} attempts came before that ` +
        `(refused by TCP) and ${c.shedBeforeTls.toLocaleString('en-US')} arrived faster than the server took them (shed before TLS); each such ` +
        `failure sends an agent to a new place later in the fleet window, and the last ones were still out at the deadline. With the load generators on the same ` +
        `two cores the server resumed about ${resumedPerSec} sessions a second here (phase 2), against the ` +
        `${Math.round(r.agents / window)} a second that spreading ${r.agents.toLocaleString('en-US')} agents over ${window.toFixed(0)} s asks for.`,
    );
  }
  notes.push(
    input.args.workers > 0
      ? `- **Both cores.** The agent port ran in ${input.args.workers} worker processes (each holds its own sockets, below its own ` +
          'open-file limit) and the primary kept storage, the console and the live registry; all of them, the load generators and ' +
          'the driver share the two cores, so the wall-clock rates here are what is left after the clients take their part.'
      : '- **One process.** The server ran as one process (no `--agent-workers`), so on one core; the load generators and the driver ' +
          'take the other. `--workers N` runs both servers with N agent-port worker processes.',
  );
  return notes;
}

