import { createPublicKey } from 'node:crypto';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { generateKeyPair, issueClientCert } from '../../common/pki.js';
import { Harness, readTestCa, waitFor, type TestServer } from '../../test/support/harness.js';
import { ROOT_GROUP_ID } from '../../server/storage/migrations.js';
import { emptyStats, Loadgen, loopbackSources, type LoadgenConfig } from '../loadgen.js';
import { startLoadgen } from '../loadgen-process.js';
import { checkinWarmupMs, parseScaleArgs } from '../bench-scale.js';
import { renderScaleSection, type ScaleResult } from '../bench-scale-report.js';
import { parseProcStat, treeCpuMs } from '../bench-machine.js';
import { spawn } from 'node:child_process';

const h = new Harness();
afterEach(() => h.cleanup());

/** `count` devices with certificates from the server's CA, one shared key pair, as the bench makes them. */
async function fleet(s: TestServer, count: number): Promise<LoadgenConfig> {
  const ca = await readTestCa('ca');
  const keys = generateKeyPair(2048);
  const agents: { deviceId: string; certPem: string }[] = [];
  for (let i = 0; i < count; i += 1) {
    const deviceId = `dev_load_${i}`;
    const issued = issueClientCert(ca, { publicKeyPem: keys.publicKeyPem, deviceId });
    await s.server.storage.devices.insert({
      id: deviceId,
      certSerial: issued.serial,
      certNotAfter: issued.notAfter.getTime(),
      groupId: ROOT_GROUP_ID,
      placementReason: null,
      hostname: deviceId,
      fingerprint: null,
      agentVersion: null,
      enrolledAt: Date.now(),
      tokenId: null,
    });
    agents.push({ deviceId, certPem: issued.certPem });
  }
  return { host: '127.0.0.1', port: s.server.agentPort, caPem: s.server.pki.ca.certPem, keyPem: keys.privateKeyPem, agents, handshakeTimeoutMs: 10_000, backoff: { baseMs: 20, capMs: 500 } };
}

describe('load generator', () => {
  it('connects many agents from several loopback source addresses; they check in and the server stores it', async () => {
    const s = await h.startServer();
    const cfg = await fleet(s, 12);
    const gen = new Loadgen({ ...cfg, sourceAddresses: loopbackSources(3) });
    h.defer(() => gen.stop());
    await gen.connectAll({ concurrency: 4, resume: false, deadlineMs: 30_000 });
    expect(gen.stats.connected).toBe(12);
    expect(s.server.registry.size).toBe(12);
    const addresses = new Set([...s.server.registry.values()].map((session) => (session as unknown as { address: string }).address));
    expect(addresses).toEqual(new Set(['127.0.0.1', '127.0.0.2', '127.0.0.3']));

    const run = await gen.steady({ intervalMs: 100, durationMs: 400 });
    expect(run.unanswered).toBe(0);
    expect(run.rttMs.length).toBeGreaterThanOrEqual(12);
    const stored = await s.storedDevice('dev_load_0');
    expect(stored.lastSeq).toBeGreaterThan(0);
    expect(stored.lastCheckinAt).not.toBeNull();
  });

  it('reconnects after the server restarts, resuming TLS sessions, and never gives up while it is down', async () => {
    const s = await h.startServer();
    const cfg = await fleet(s, 6);
    const gen = new Loadgen(cfg);
    h.defer(() => gen.stop());
    await gen.connectAll({ concurrency: 6, resume: false, deadlineMs: 30_000 });
    await waitFor(() => gen.sessionsHeld === 6 || undefined, 'every agent to hold a TLS session');
    // As agents do: back, each checks in at once, then once per interval.
    gen.setAutoReconnect(true, 150);
    await s.close();
    await waitFor(() => gen.stats.connected === 0 || undefined, 'every agent to see the server go');
    await waitFor(() => gen.stats.tcpRefused > 0 || undefined, 'agents retrying against the stopped server');
    expect(gen.stats.returnCheckins).toBe(0);
    const again = await h.startServer({ agentPort: cfg.port }, { dataDir: s.dataDir });
    await waitFor(() => gen.stats.connected === 6 || undefined, 'every agent back', 20_000);
    expect(again.server.registry.size).toBe(6);
    expect(gen.stats.resumedConnects).toBe(6);
    expect(gen.stats.gaveUp).toBe(0);
    await waitFor(() => (gen.stats.returnAcks >= 12 ? true : undefined), 'two acked check-ins per agent back');
    gen.setAutoReconnect(false);
    for (const a of cfg.agents) expect((await again.storedDevice(a.deviceId)).lastSeq).toBeGreaterThanOrEqual(1);
    expect(gen.stats.returnAcks).toBeLessThanOrEqual(gen.stats.returnCheckins);
  });

  it('runs as a child process driven over IPC', async () => {
    const s = await h.startServer();
    const cfg = await fleet(s, 3);
    const child = await startLoadgen(cfg);
    h.defer(() => child.stop());
    const stats = await child.connect(3, false, 30_000);
    expect(stats.connected).toBe(3);
    expect(stats.fullConnects).toBe(3);
    const steady = await child.steady(100, 300);
    expect(steady.unanswered).toBe(0);
    expect(steady.rttMs.length).toBeGreaterThanOrEqual(3);
    await child.disconnect();
    await waitFor(() => s.server.registry.size === 0 || undefined, 'the server to see the channels close');
    const resumed = await child.connect(3, true, 30_000);
    expect(resumed.resumedConnects).toBe(3);
  });

  it('reports a clear error when agents cannot connect (unknown device; certificate not matching the key), without hanging', async () => {
    const s = await h.startServer();
    const cfg = await fleet(s, 1);
    const publicKeyPem = createPublicKey(cfg.keyPem).export({ type: 'spki', format: 'pem' }).toString();
    const unknown = issueClientCert(await readTestCa('ca'), { publicKeyPem, deviceId: 'dev_nobody' });
    const gen = new Loadgen({ ...cfg, agents: [{ deviceId: 'dev_nobody', certPem: unknown.certPem }] });
    h.defer(() => gen.stop());
    await expect(gen.connectAll({ concurrency: 1, resume: false, deadlineMs: 300 })).rejects.toThrow(/1 of 1 agents not connected.*HTTP 403/);
    expect(gen.stats.refused).toBeGreaterThan(0);
    const mismatched = new Loadgen({ ...cfg, agents: [{ deviceId: 'dev_stray', certPem: s.strayCertificate('dev_stray').certPem }] });
    h.defer(() => mismatched.stop());
    await expect(mismatched.connectAll({ concurrency: 1, resume: false, deadlineMs: 300 })).rejects.toThrow(/key values mismatch/);
    expect(s.server.registry.size).toBe(0);
  });
});

describe('scale bench arguments and report', () => {
  it('defaults to 5000 agents and refuses bad flags', () => {
    const args = parseScaleArgs([]);
    expect('help' in args ? undefined : args.agents).toBe(5000);
    expect(() => parseScaleArgs(['--agents', '0'])).toThrow(/--agents/);
    expect(() => parseScaleArgs(['--only', 'both'])).toThrow(/--only/);
    expect(() => parseScaleArgs(['extra'])).toThrow(/unexpected argument/);
    expect('help' in args ? undefined : args.profileDir).toBeUndefined();
    const profiled = parseScaleArgs(['--profile', 'profiles']);
    expect('help' in profiled ? undefined : profiled.profileDir).toBe(path.resolve('profiles'));
  });

  it("gives a fleet beyond one process's open files agent-port workers, 12,000 agents each", () => {
    const one = parseScaleArgs([]);
    expect('help' in one ? undefined : one.workers).toBe(0);
    const large = parseScaleArgs(['--agents', '100000']);
    expect('help' in large ? undefined : { workers: large.workers, loadgens: large.loadgens }).toEqual({ workers: 9, loadgens: 7 });
    const chosen = parseScaleArgs(['--agents', '100000', '--workers', '4']);
    expect('help' in chosen ? undefined : chosen.workers).toBe(4);
    expect(() => parseScaleArgs(['--workers', '65'])).toThrow(/--workers/);
  });

  it('lets a fleet quiet long enough to be pinged check in for one interval before the steady window, and no other', () => {
    expect(checkinWarmupMs(15_000, 60)).toBe(0); // 5,000 agents resume in seconds: nobody pinged yet
    expect(checkinWarmupMs(59_999, 60)).toBe(0);
    expect(checkinWarmupMs(60_000, 60)).toBe(60_000); // at the defaults a pass may ping after 60-90 s of quiet
    expect(checkinWarmupMs(215_000, 60)).toBe(60_000); // 100,000 agents: 212 s of resumed connects
    expect(checkinWarmupMs(215_000, 30)).toBe(30_000);
  });

  it('renders ratios and goals from its input', () => {
    const zero = emptyStats();
    const none = { full: undefined, resumed: undefined, steady: undefined, storm: undefined };
    const result = (kind: 'ours' | 'bare', rssPerAgent: number, cpu: number, foreign: ScaleResult['foreign'] = none): ScaleResult => ({
      kind,
      agents: 100,
      full: { wallMs: 1000, cpuMsPerConnect: cpu, clients: { ...zero, fullConnects: 100 } },
      resumed: { wallMs: 500, cpuMsPerConnect: cpu / 2, clients: { ...zero, resumedConnects: 100 } },
      memory: { rssBeforeBytes: 0, rssAfterBytes: rssPerAgent * 100, rssPerAgentBytes: rssPerAgent, heapPerAgentBytes: 1024 },
      steady: { wallMs: 10_000, checkins: 16, unanswered: 0, cpuMs: 10, idleCpuMs: 0, checkinCpuMs: 10, cpuShareOfCore: 0.001, cpuMsPerCheckin: 0.5, p50Ms: 1, p99Ms: 2, maxMs: 3, eventLoopDelayMaxMs: 1, console: undefined },
      fleetRate: { intervalMs: 60, wallMs: 10_000, checkins: 1000, unanswered: 0, cpuMs: 300, cpuShareOfCore: 0.03, idleShareOfCore: 0.01, p50Ms: 1, p99Ms: 2, maxMs: 3, eventLoopDelayMaxMs: 1, console: undefined },
      storm: { restartMs: 500, backWithinMs: 4000, backAfterReadyMs: 3500, connectedAtEnd: 100, clients: zero, serverCpuMs: 100, peakRssBytes: 1, rssAfterBytes: 1, console: undefined },
      foreign,
      timeline: [{ tMs: 1000, phase: 'storm', connected: 42 }],
    });
    const text = renderScaleSection({
      startedAt: new Date(0),
      machine: { cpuModel: 'test cpu', cpuCount: 2, totalMemoryBytes: 2 ** 34, nodeVersion: 'v20', os: 'Linux' },
      openFileLimit: 20_000,
      args: { agents: 100, concurrency: 10, loadgens: 1, workers: 0, sources: 2, intervalSec: 60, steadySec: 10, stormTimeoutSec: 300, storm: 'graceful' },
      results: [result('ours', 60 * 1024, 3, { full: 0.02, resumed: 0.314, steady: undefined, storm: 0.05 }), result('bare', 50 * 1024, 2)],
    });
    expect(text).toContain('| RSS per connected agent (KiB) | 60.0 | 50.0 | 1.20x | ✗ ≤ 64 KiB and ≤ 1.15x |');
    expect(text).toContain('| server CPU per full mTLS connect (ms) | 3.00 | 2.00 | 1.50x | ✗ ≤ 1.15x |');
    expect(text).toContain('storm: 1 s: 42');
    // Other work on the machine, per phase, where /proc could tell (bare's run had none to show).
    expect(text).toContain('as a share of all 2 cores in each phase: Rollcall: full connects 2 %, resumed connects 31 %, storm 5 %.');
    expect(text).not.toContain('bare ws+https: full connects');
    expect(text).toContain('server CPU, all of it (% of one core) | 3.0 | 3.0 | 1.00x | ✓ ≤ 25% (includes the idle work of these channels) |');
  });
});

describe("CPU of the bench's own processes", () => {
  it('reads the parent and CPU ticks of a /proc stat line, whatever the command name holds', () => {
    const fields = (name: string): string => `4242 (${name}) S 17 4242 4242 0 -1 4194560 500 0 0 0 120 30 7 3 20 0 1 0 100 1000 10`;
    expect(parseProcStat(fields('node'))).toEqual({ ppid: 17, ownTicks: 150, reapedTicks: 10 });
    expect(parseProcStat(fields('a) (b c) x'))).toEqual({ ppid: 17, ownTicks: 150, reapedTicks: 10 });
    expect(parseProcStat('4242 (node) S 17')).toBeUndefined();
    expect(parseProcStat('garbage')).toBeUndefined();
  });

  it('counts a child that burned CPU and exited once, through its parent\'s reaped-children time', async () => {
    const before = await treeCpuMs();
    if (before === undefined) return; // no /proc here: nothing to read
    const burn = 'const s = process.cpuUsage(); while ((process.cpuUsage(s).user + process.cpuUsage(s).system) < 400_000) {}';
    await new Promise<void>((resolve, reject) => {
      const child = spawn(process.execPath, ['-e', burn], { stdio: 'ignore' });
      child.on('error', reject);
      child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`child exited ${code}`))));
    });
    const after = (await treeCpuMs())!;
    // 400 ms of the child's own work (10 ms ticks), its start-up, and a little of ours; counted twice it would be over 800.
    expect(after - before).toBeGreaterThanOrEqual(390);
    expect(after - before).toBeLessThan(800);
  });
});
