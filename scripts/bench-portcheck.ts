/**
 * Benchmark of `rollcall portcheck`: 10 ports of real Rollcall listeners on
 * loopback (5 servers, each with its agent and console port), checked in one
 * run, every step included (DNS, TCP, TLS against the pin, identification,
 * the WebSocket step on agent ports); then the same with one port replaced by
 * a listener that accepts TCP and never answers (the closest to "drops
 * packets" that stays on loopback: the TLS step has to time out). Goals:
 * under 2 s when all answer; within the step timeout + 1 s with the silent
 * port.
 */
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { runPortcheck, type PortSpec } from '../common/portcheck/engine.js';
import { createCa, issueServerCert, spkiPin } from '../common/pki.js';
import { resolveServerConfig } from '../server/config.js';
import { buildServer, type RollcallServer } from '../server/server.js';

/** What the benchmark measured. */
export interface PortcheckBenchResult {
  readonly ports: number;
  readonly stepTimeoutMs: number;
  /** Median wall time of a check of every port, all answering. */
  readonly allAnswerMs: number;
  readonly allAnswerRunsMs: readonly number[];
  readonly allAnswerOk: boolean;
  /** Median wall time with one silent port. */
  readonly oneSilentMs: number;
  readonly oneSilentRunsMs: readonly number[];
  /** The failure class reported for the silent port. */
  readonly silentFailure: string | undefined;
}

const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Runs the benchmark with `servers` Rollcall servers (2 ports each). */
export async function benchPortcheck(opts: { servers?: number; runs?: number; stepTimeoutMs?: number } = {}): Promise<PortcheckBenchResult> {
  const serverCount = opts.servers ?? 5;
  const runs = opts.runs ?? 5;
  const stepTimeoutMs = opts.stepTimeoutMs ?? 1000;
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'rollcall-bench-portcheck-'));
  const ca = createCa({ commonName: 'Bench CA' });
  const server = issueServerCert(ca, { hosts: ['localhost', '127.0.0.1'] });
  const servers: RollcallServer[] = [];
  const held = new Set<net.Socket>();
  const silent = net.createServer((socket) => {
    held.add(socket); // accepts, never speaks
    socket.on('close', () => held.delete(socket));
    socket.on('error', () => socket.destroy());
  });
  try {
    for (let i = 0; i < serverCount; i += 1) {
      const dataDir = path.join(root, `s${i}`);
      await fs.mkdir(path.join(dataDir, 'pki'), { recursive: true });
      await fs.writeFile(path.join(dataDir, 'pki', 'ca.crt'), ca.certPem);
      await fs.writeFile(path.join(dataDir, 'pki', 'ca.key'), ca.keyPem, { mode: 0o600 });
      await fs.writeFile(path.join(dataDir, 'pki', 'server.crt'), server.certPem);
      await fs.writeFile(path.join(dataDir, 'pki', 'server.key'), server.keyPem, { mode: 0o600 });
      const config = resolveServerConfig({ dataDir, listenHost: '127.0.0.1', agentPort: 0, consolePort: 0, synchronous: 'NORMAL' });
      const s = await buildServer(config, { log: pino({ level: 'silent' }), resolveHost: async () => [] });
      await s.start();
      servers.push(s);
    }
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const silentPort = (silent.address() as net.AddressInfo).port;
    const ports: PortSpec[] = servers.flatMap((s) => [
      { port: s.agentPort, role: 'agent' as const, required: true },
      { port: s.consolePort, role: 'console' as const, required: true },
    ]);
    const check = (list: PortSpec[]) => runPortcheck({ host: '127.0.0.1', ports: list, trust: { pin: spkiPin(ca.certPem) }, stepTimeoutMs });
    await check(ports); // warm-up
    const allAnswerRunsMs: number[] = [];
    let allAnswerOk = true;
    for (let i = 0; i < runs; i += 1) {
      const t = performance.now();
      const report = await check(ports);
      allAnswerRunsMs.push(performance.now() - t);
      allAnswerOk &&= report.ok;
    }
    const withSilent: PortSpec[] = [...ports.slice(0, -1), { port: silentPort, role: 'console', required: true }];
    const oneSilentRunsMs: number[] = [];
    let silentFailure: string | undefined;
    for (let i = 0; i < runs; i += 1) {
      const t = performance.now();
      const report = await check(withSilent);
      oneSilentRunsMs.push(performance.now() - t);
      silentFailure = report.ports.find((p) => p.port === silentPort)?.failure?.class;
    }
    return {
      ports: ports.length,
      stepTimeoutMs,
      allAnswerMs: median(allAnswerRunsMs),
      allAnswerRunsMs,
      allAnswerOk,
      oneSilentMs: median(oneSilentRunsMs),
      oneSilentRunsMs,
      silentFailure,
    };
  } finally {
    for (const socket of held) socket.destroy();
    await new Promise<void>((resolve) => silent.close(() => resolve()));
    for (const s of servers) await s.close();
    await fs.rm(root, { recursive: true, force: true });
  }
}
