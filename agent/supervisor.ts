/**
 * The reconnect loop: the one place that decides when to dial again.
 *
 * After any failure it waits a full-jitter exponential backoff (see
 * common/backoff.ts), never less than a delay the server advised, and
 * moves on to the next server in the list. A channel that reached
 * `welcome` resets the backoff. A terminal failure (revoked, unknown
 * device, expired certificate) ends the loop: retrying cannot help.
 */
import os from 'node:os';
import tls from 'node:tls';
import type { Logger } from 'pino';
import { backoffDelay, type BackoffPolicy } from '../common/backoff.js';
import { parseHostPort } from '../common/https-json.js';
import { runConnection, collectInventory } from './connection.js';
import { DEFAULT_AGENT_PORT } from './enroll.js';
import type { Failure } from './errors.js';
import type { AgentState } from './state.js';
import { StatusFile } from './status.js';
import { ProbeScheduler, type ProbeFn } from './prober.js';
import { ReportQueue } from './report-queue.js';
import { portcheckProbe } from './portcheck-probe.js';

/** Options for {@link startAgent}. */
export interface AgentRunOptions {
  readonly state: AgentState;
  readonly fingerprint: string;
  readonly backoff: BackoffPolicy;
  readonly connectTimeoutMs: number;
  readonly ackTimeoutMs: number;
  readonly intervalOverrideSec?: number;
  readonly log: Logger;
  readonly random?: () => number;
  /** Checks server ports from here (default: the port-check engine, no WebSocket step). */
  readonly probe?: ProbeFn;
  /** Time between probe rounds while connected (default 1 h). */
  readonly probeIntervalMs?: number;
}

/** How a run ended. */
export type RunOutcome = { readonly kind: 'stopped' } | { readonly kind: 'terminal'; readonly failure: Failure };

/** A running agent. */
export interface RunningAgent {
  readonly status: StatusFile;
  /** Closes the channel cleanly and ends the loop. */
  stop(): Promise<RunOutcome>;
  readonly done: Promise<RunOutcome>;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done);
  });
}

/** Loads the enrollment and starts the reconnect loop. */
export async function startAgent(opts: AgentRunOptions): Promise<RunningAgent> {
  const creds = await opts.state.loadCredentials();
  let ackedSeq = await opts.state.loadAckedSeq();
  const { identity } = creds;
  const secureContext = tls.createSecureContext({ ca: creds.caPem, cert: creds.certPem, key: creds.keyPem, minVersion: 'TLSv1.2' });
  const now = new Date().toISOString();
  const status = new StatusFile(
    opts.state.file('status'),
    {
      state: 'starting',
      deviceId: identity.deviceId,
      group: identity.group.path,
      server: identity.servers[0] ?? '',
      pid: process.pid,
      since: now,
      updatedAt: now,
      intervalSec: null,
      lastCheckinAt: null,
      lastAckedSeq: ackedSeq,
      connectedSince: null,
      nextAttemptAt: null,
      failedAttempts: 0,
      lastError: null,
    },
    (err) => opts.log.error({ err: (err as Error).message }, 'cannot write status file'),
  );
  const abort = new AbortController();
  const log = opts.log.child({ deviceId: identity.deviceId });
  const reports = await ReportQueue.open(opts.state.file('attempts'), (err) => log.error({ err: (err as Error).message }, 'cannot keep failed-attempt records'));
  const prober = new ProbeScheduler(
    opts.probe ?? portcheckProbe({ caPem: creds.caPem }),
    reports,
    opts.probeIntervalMs ?? 3_600_000,
    log,
  );
  const hosts = identity.servers.map((s) => parseHostPort(s, DEFAULT_AGENT_PORT).host);
  let savedPorts = JSON.stringify(await opts.state.loadListenerPorts());

  let seqWrites: Promise<void> = Promise.resolve();
  const loop = async (): Promise<RunOutcome> => {
    let attempt = 0;
    let serverIndex = 0;
    while (!abort.signal.aborted) {
      const server = identity.servers[serverIndex % identity.servers.length]!;
      const { host, port } = parseHostPort(server, DEFAULT_AGENT_PORT);
      status.update({ state: 'connecting', server, nextAttemptAt: null });
      let welcomed = false;
      const failure = await runConnection({
        host,
        port,
        path: identity.checkinPath,
        secureContext,
        deviceId: identity.deviceId,
        hostname: os.hostname(),
        fingerprint: opts.fingerprint,
        inventory: collectInventory(),
        ackedSeq,
        connectTimeoutMs: opts.connectTimeoutMs,
        ackTimeoutMs: opts.ackTimeoutMs,
        intervalOverrideSec: opts.intervalOverrideSec,
        signal: abort.signal,
        log,
        reports,
        onWelcome: (w) => {
          welcomed = true;
          if (w.ports) {
            prober.onConnected(hosts, w.ports);
            const text = JSON.stringify(w.ports);
            if (text !== savedPorts) {
              savedPorts = text;
              opts.state.saveListenerPorts(w.ports).catch((err: unknown) => log.error({ err: (err as Error).message }, 'cannot save listener ports'));
            }
          }
          attempt = 0;
          ackedSeq = Math.max(ackedSeq, w.lastSeq);
          const intervalSec = opts.intervalOverrideSec ?? w.intervalSec; // the interval in use, as runConnection applies it
          log.info({ server, group: w.group.path, intervalSec }, 'connected');
          status.update({ state: 'connected', connectedSince: new Date().toISOString(), intervalSec, group: w.group.path, failedAttempts: 0 });
        },
        onInterval: (intervalSec) => status.update({ intervalSec }),
        onAck: (seq, at) => {
          ackedSeq = seq;
          status.update({ lastCheckinAt: new Date(at).toISOString(), lastAckedSeq: seq });
          // Writes are chained so two never share the temp file; each writes the newest value.
          seqWrites = seqWrites
            .then(() => opts.state.saveAckedSeq(ackedSeq))
            .catch((err: unknown) => log.error({ err: (err as Error).message }, 'cannot save sequence number'));
        },
      });
      prober.onDisconnected();
      if (failure === null) break;
      const at = new Date().toISOString();
      if (!welcomed) {
        reports.addAttempt({ server, class: failure.class, code: failure.code, message: failure.message, at: Date.now() });
        prober.noteFailure();
      }
      const lastError = { class: failure.class, code: failure.code, message: failure.message, at };
      log.warn({ server, class: failure.class, code: failure.code, reason: failure.message, afterWelcome: welcomed }, 'connection ended');
      if (failure.terminal) {
        status.update({ state: 'refused', lastError, connectedSince: null });
        return { kind: 'terminal', failure };
      }
      if (!welcomed) serverIndex += 1;
      const delay = backoffDelay(opts.backoff, attempt, opts.random, failure.retryAfterMs);
      attempt += 1;
      status.update({
        state: 'backoff',
        lastError,
        connectedSince: null,
        failedAttempts: status.status.failedAttempts + 1,
        nextAttemptAt: new Date(Date.now() + delay).toISOString(),
      });
      await sleep(delay, abort.signal);
    }
    status.update({ state: 'stopped', connectedSince: null, nextAttemptAt: null });
    return { kind: 'stopped' };
  };

  const done = loop().then(async (outcome) => {
    await prober.stop();
    await reports.flushed();
    await seqWrites;
    await status.flushed();
    return outcome;
  });
  return {
    status,
    done,
    async stop() {
      abort.abort();
      return done;
    },
  };
}
