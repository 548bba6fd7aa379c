/**
 * The reconnect loop: the one place that decides when to dial again.
 *
 * After any failure it waits a full-jitter exponential backoff (see
 * common/backoff.ts), never less than a delay the server advised, and
 * moves on to the next server in the list. A channel that reached
 * `welcome` resets the backoff; from the second retry on, the window is at
 * least the fleet's reconnect window the server advertised in `welcome`
 * (protocol 4), so a fleet that lost its server comes back spread out. A terminal failure (revoked, unknown
 * device, expired certificate) ends the loop: retrying cannot help.
 */
import os from 'node:os';
import tls from 'node:tls';
import type { Logger } from 'pino';
import type { Welcome } from '../common/protocol.js';
import { newReconnectState, nextReconnectDelay, reconnectWelcomed, type BackoffPolicy } from '../common/backoff.js';
import { parseHostPort } from '../common/https-json.js';
import { tlsThroughProxy, type ProxyConfig } from '../common/http-proxy.js';
import { X509Certificate } from 'node:crypto';
import { certInfo, isIssuedBy, spkiPin } from '../common/pki.js';
import { CERT_RENEWED, DEFAULT_INTERVAL_SEC, runConnection, collectInventory, type ConnectFn } from './connection.js';
import { DEFAULT_AGENT_PORT } from './enroll.js';
import { asPinMismatch, remedyFor, type Failure } from './errors.js';
import { Outbox, type OutboxLimits } from './outbox.js';
import { OfflineCheckins } from './offline-checkins.js';
import { importLegacyAttempts, OutboxFeed, recordInventoryChange, runSyntheticEvents } from './outbox-feeds.js';
import { CertRenewal } from './renewal.js';
import { splitPems, type AgentState } from './state.js';
import { StatusFile } from './status.js';
import { ProbeScheduler, type ProbeFn } from './prober.js';
import { portcheckProbe } from './portcheck-probe.js';
import { isoTime } from '../common/iso-time.js';

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
  /** An HTTP CONNECT proxy to reach every server through. */
  readonly proxy?: ProxyConfig;
  /** Bounds of the outbox (default DEFAULT_OUTBOX_LIMITS). */
  readonly outboxLimits?: Partial<OutboxLimits>;
  /** Test-only synthetic load (ROLLCALL_AGENT_TEST_EVENTS). */
  readonly syntheticEvents?: { readonly total: number; readonly perSec: number };
  /** Clock for renewal decisions; a seam for tests. */
  readonly now?: () => number;
}

/** How a run ended. */
export type RunOutcome = { readonly kind: 'stopped' } | { readonly kind: 'terminal'; readonly failure: Failure };

/** A running agent. */
export interface RunningAgent {
  readonly status: StatusFile;
  readonly outbox: Outbox;
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

/** The key pair a connection presents, with its TLS context. */
interface Credentials {
  readonly keyPem: string;
  readonly certPem: string;
  readonly secureContext: tls.SecureContext;
  readonly renewal: CertRenewal;
}

/** Builds the dialler of one server: direct, or through the proxy. */
function dialler(opts: AgentRunOptions, host: string, port: number, secureContext: tls.SecureContext): ConnectFn | undefined {
  const proxy = opts.proxy;
  if (!proxy) return undefined;
  return () => tlsThroughProxy(proxy, { host, port }, { secureContext, timeoutMs: opts.connectTimeoutMs });
}

/** Loads the enrollment and starts the reconnect loop. */
export async function startAgent(opts: AgentRunOptions): Promise<RunningAgent> {
  const creds = await opts.state.loadCredentials();
  let ackedSeq = await opts.state.loadAckedSeq();
  const { identity } = creds;
  const now = opts.now ?? Date.now;
  let caPems = splitPems(creds.caPem);
  const credentialsOf = (pair: { keyPem: string; certPem: string }): Credentials => ({
    keyPem: pair.keyPem,
    certPem: pair.certPem,
    secureContext: tls.createSecureContext({ ca: caPems.join(''), cert: pair.certPem, key: pair.keyPem, minVersion: 'TLSv1.2' }),
    renewal: new CertRenewal(opts.state, { certPem: pair.certPem, caPems, deviceId: identity.deviceId }, now),
  });
  let current = credentialsOf(creds);
  const renewed = await opts.state.loadRenewed();
  let next: Credentials | null = renewed ? credentialsOf(renewed) : null;
  const certificateStatus = (c: Credentials) => {
    const info = certInfo(c.certPem);
    return { serial: info.serial, notAfter: isoTime(info.notAfter), renewAt: isoTime(c.renewal.dueAt) };
  };
  const startedAt = isoTime();
  const status = new StatusFile(
    opts.state.file('status'),
    {
      state: 'starting',
      deviceId: identity.deviceId,
      group: identity.group.path,
      server: identity.servers[0] ?? '',
      path: opts.proxy ? `proxy ${opts.proxy.display}` : 'direct',
      pid: process.pid,
      since: startedAt,
      updatedAt: startedAt,
      intervalSec: null,
      lastCheckinAt: null,
      lastAckedSeq: ackedSeq,
      connectedSince: null,
      nextAttemptAt: null,
      failedAttempts: 0,
      lastSuccessAt: null,
      lastError: null,
      outbox: null,
      certificate: certificateStatus(current),
    },
    (err) => opts.log.error({ err: (err as Error).message }, 'cannot write status file'),
  );
  const abort = new AbortController();
  const log = opts.log.child({ deviceId: identity.deviceId });
  const outbox = await Outbox.open(opts.state.file('outbox'), {
    limits: opts.outboxLimits,
    onProblem: (message, err) => log.error({ err: err === undefined ? undefined : (err as Error).message }, message),
  });
  const feed = new OutboxFeed(outbox, log);
  const showOutbox = (): void => status.update({ outbox: outbox.stats() });
  const stopWatching = outbox.onChange(showOutbox);
  showOutbox();
  await importLegacyAttempts(opts.state, feed, log);
  await recordInventoryChange(opts.state, feed, collectInventory()).catch((err: unknown) => log.error({ err: (err as Error).message }, 'cannot record the inventory'));
  const synthetic = opts.syntheticEvents ? runSyntheticEvents(outbox, feed, opts.syntheticEvents, abort.signal) : Promise.resolve();
  // No live channel until the first welcome: check-in records go to the outbox meanwhile.
  const offlineCheckins = new OfflineCheckins(feed, { defaultIntervalSec: DEFAULT_INTERVAL_SEC, intervalOverrideSec: opts.intervalOverrideSec });
  offlineCheckins.offline();
  const prober = new ProbeScheduler(opts.probe ?? portcheckProbe({ caPem: () => caPems.join('') }), feed, opts.probeIntervalMs ?? 3_600_000, log);
  const hosts = identity.servers.map((s) => parseHostPort(s, DEFAULT_AGENT_PORT).host);
  let savedPorts = JSON.stringify(await opts.state.loadListenerPorts());

  let seqWrites: Promise<void> = Promise.resolve();
  const onWelcomeOf = (server: string, marked: (w: Welcome) => void) => (w: Welcome) => {
    marked(w);
    offlineCheckins.setServerInterval(w.intervalSec);
    offlineCheckins.online();
    if (w.ports) {
      prober.onConnected(hosts, w.ports);
      const text = JSON.stringify(w.ports);
      if (text !== savedPorts) {
        savedPorts = text;
        opts.state.saveListenerPorts(w.ports).catch((err: unknown) => log.error({ err: (err as Error).message }, 'cannot save listener ports'));
      }
    }
    ackedSeq = Math.max(ackedSeq, w.lastSeq);
    recordInventoryChange(opts.state, feed, collectInventory()).catch((err: unknown) => log.error({ err: (err as Error).message }, 'cannot record the inventory'));
    const intervalSec = opts.intervalOverrideSec ?? w.intervalSec; // the interval in use, as runConnection applies it
    log.info({ server, path: status.status.path, group: w.group.path, intervalSec }, 'connected');
    const at = isoTime();
    status.update({ state: 'connected', connectedSince: at, lastSuccessAt: at, intervalSec, group: w.group.path, failedAttempts: 0 });
  };
  const onAck = (seq: number, at: number): void => {
    ackedSeq = seq;
    status.update({ lastCheckinAt: isoTime(at), lastSuccessAt: isoTime(at), lastAckedSeq: seq });
    // Writes are chained so two never share the temp file; each writes the newest value.
    seqWrites = seqWrites.then(() => opts.state.saveAckedSeq(ackedSeq)).catch((err: unknown) => log.error({ err: (err as Error).message }, 'cannot save sequence number'));
  };

  /** The server named the CAs to trust (rotation): trust them from the next connection, and renew from the newest. */
  const applyTrust = (pems: string[]): void => {
    const valid = pems.every((p) => {
      try {
        return new X509Certificate(p).ca;
      } catch {
        return false; // not a certificate: the whole message is refused below
      }
    });
    if (!valid) return void log.warn('the server sent a trust list that is not all CA certificates; ignored');
    if (pems.join('') === caPems.join('')) return;
    caPems = [...pems];
    current = credentialsOf(current);
    if (next) next = credentialsOf(next);
    if (!isIssuedBy(current.certPem, pems[0]!)) current.renewal.forceDue();
    log.info({ pins: pems.map((p) => spkiPin(p)) }, 'the server rotates its CA: trusting the CAs it named, renewing from the newest');
    trustWrites = trustWrites.then(() => opts.state.saveTrustedCas(pems)).catch((err: unknown) => log.error({ err: (err as Error).message }, 'cannot save the trusted CAs'));
  };
  let trustWrites: Promise<void> = Promise.resolve();

  /** After a connection with the renewed pair: make it current if it worked, forget it if the server refused it. */
  const settleRenewal = async (welcomed: boolean, failure: Failure | null): Promise<void> => {
    if (!next) return;
    if (welcomed) {
      await opts.state.promoteRenewed();
      current = next;
      next = null;
      log.info({ serial: certificateStatus(current).serial }, 'renewed certificate in use; the old one was removed');
      status.update({ certificate: certificateStatus(current) });
    } else if (failure && (failure.class === 'TLS' || failure.terminal)) {
      log.warn({ code: failure.code }, 'the server refused the renewed certificate; going back to the current one');
      await opts.state.discardRenewed();
      next = null;
    }
  };

  const loop = async (): Promise<RunOutcome> => {
    let serverIndex = 0;
    // Failed attempts, and the fleet's reconnect window as the server last advertised it (protocol 4).
    const reconnect = newReconnectState();
    while (!abort.signal.aborted) {
      const server = identity.servers[serverIndex % identity.servers.length]!;
      const { host, port } = parseHostPort(server, DEFAULT_AGENT_PORT);
      status.update({ state: 'connecting', server, nextAttemptAt: null });
      let welcomed = false;
      let renewalSettled: Promise<void> = Promise.resolve();
      const using = next ?? current;
      const ended = await runConnection({
        host,
        port,
        path: identity.checkinPath,
        secureContext: using.secureContext,
        connect: dialler(opts, host, port, using.secureContext),
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
        outbox,
        renewal: () => (next ? undefined : current.renewal),
        onWelcome: onWelcomeOf(server, (w) => {
          welcomed = true;
          reconnectWelcomed(reconnect, w.reconnectWindowMs ?? 0);
          // The renewed pair reached welcome: it is the current one from now on.
          if (using === next) renewalSettled = settleRenewal(true, null).catch((err: unknown) => log.error({ err: (err as Error).message }, 'cannot make the renewed certificate current'));
        }),
        onInterval: (intervalSec) => {
          offlineCheckins.setServerInterval(intervalSec);
          status.update({ intervalSec });
        },
        onTrust: applyTrust,
        onAck,
      });
      const failure = ended && asPinMismatch(ended, identity.caPin);
      prober.onDisconnected();
      await renewalSettled;
      const triedRenewed = !welcomed && using === next;
      if (triedRenewed) await settleRenewal(false, failure).catch((err: unknown) => log.error({ err: (err as Error).message }, 'cannot drop the renewed certificate'));
      if (failure === null) break;
      offlineCheckins.offline(failure.code === CERT_RENEWED ? undefined : failure.class);
      if (failure.code === CERT_RENEWED) {
        next = (await opts.state.loadRenewed().then((pair) => pair && credentialsOf(pair))) ?? null;
        continue; // straight back, with the renewed pair
      }
      const at = isoTime();
      if (!welcomed) {
        feed.addAttempt({ server, class: failure.class, code: failure.code, message: failure.message, at: Date.now() });
        prober.noteFailure();
      }
      const lastError = { class: failure.class, code: failure.code, message: failure.message, at, remedy: remedyFor(failure) };
      const terminal = failure.terminal && !triedRenewed;
      const delay = terminal ? undefined : nextReconnectDelay(opts.backoff, reconnect, opts.random, failure.retryAfterMs);
      log.warn(
        { server, class: failure.class, code: failure.code, reason: failure.message, afterWelcome: welcomed, remedy: lastError.remedy, retryInMs: delay },
        'connection ended',
      );
      if (delay === undefined) {
        status.update({ state: 'refused', lastError, connectedSince: null });
        return { kind: 'terminal', failure };
      }
      if (!welcomed) serverIndex += 1;
      status.update({
        state: 'backoff',
        lastError,
        connectedSince: null,
        failedAttempts: status.status.failedAttempts + 1,
        nextAttemptAt: isoTime(Date.now() + delay),
      });
      await sleep(delay, abort.signal);
    }
    status.update({ state: 'stopped', connectedSince: null, nextAttemptAt: null });
    return { kind: 'stopped' };
  };

  const done = loop().then(async (outcome) => {
    abort.abort();
    offlineCheckins.stop();
    await prober.stop();
    await synthetic;
    stopWatching();
    await outbox.close();
    status.update({ outbox: outbox.stats() });
    await seqWrites;
    await trustWrites;
    await status.flushed();
    return outcome;
  });
  return {
    status,
    outbox,
    done,
    async stop() {
      abort.abort();
      return done;
    },
  };
}
