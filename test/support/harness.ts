/**
 * Test harness: real servers on 127.0.0.1 port 0 with the run's test PKI,
 * SQLite in temp dirs, captured pino logs, enrolled agents, raw WebSocket
 * clients, and waits with deadlines. Everything opened is closed by
 * `cleanup()` (call it in afterEach/afterAll).
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { WebSocket } from 'ws';
import { generateKeyPair, issueClientCert, type KeyedCert } from '../../common/pki.js';
import { CHECKIN_PATH, encode, type AgentMessage, type ServerMessage } from '../../common/protocol.js';
import { PROTOCOL_VERSION } from '../../common/version.js';
import { enrollAgent } from '../../agent/enroll.js';
import { AgentState } from '../../agent/state.js';
import { startAgent, type AgentRunOptions, type RunningAgent } from '../../agent/supervisor.js';
import { resolveServerConfig, type ServerConfig } from '../../server/config.js';
import { buildServer, type RollcallServer } from '../../server/server.js';
import type { HostResolver } from '../../server/health/public-hosts.js';
import { requestJson } from '../../common/https-json.js';
import { openStorage, type Storage } from '../../server/storage/index.js';
import { ROOT_GROUP_ID } from '../../server/storage/migrations.js';

/** The default resolver of test servers: every name is unknown, and nothing is asked of the network. */
const noDns: HostResolver = async (host) => {
  throw Object.assign(new Error(`tests resolve no names (${host})`), { code: 'ENOTFOUND' });
};

/** A captured log line. */
export type LogLine = Record<string, unknown> & { msg?: string; level: number };

/** A pino logger whose lines land in an array. */
export function captureLogger(): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) if (l.trim()) lines.push(JSON.parse(l) as LogLine);
      cb();
    },
  });
  return { log: pino({ level: 'debug' }, stream), lines };
}

/** Paths of the run's shared test PKI (made once by global-setup). */
export function testPkiDir(): string {
  const dir = process.env.ROLLCALL_TEST_PKI_DIR;
  if (!dir) throw new Error('ROLLCALL_TEST_PKI_DIR is not set: run tests through vitest (global-setup)');
  return dir;
}

/** Reads the test CA (the one test servers use) or the foreign CA. */
export async function readTestCa(which: 'ca' | 'foreign-ca' = 'ca'): Promise<KeyedCert> {
  const dir = testPkiDir();
  return { certPem: await fs.readFile(path.join(dir, `${which}.crt`), 'utf8'), keyPem: await fs.readFile(path.join(dir, `${which}.key`), 'utf8') };
}

/** Waits until `check` returns a truthy value, polling, with a deadline. */
export async function waitFor<T>(check: () => T | Promise<T>, what: string, timeoutMs = 10_000, everyMs = 20): Promise<NonNullable<Awaited<T>>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v as NonNullable<Awaited<T>>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Makes a temp directory removed by cleanup(). */
export class Harness {
  private readonly toClose: (() => Promise<unknown> | unknown)[] = [];

  /** Registers something to close at cleanup (last registered, first closed). */
  defer(fn: () => Promise<unknown> | unknown): void {
    this.toClose.push(fn);
  }

  /** A database in a new temp dir (closed at cleanup) holding these devices in the root group; for storage tests. */
  async storageWithDevices(devices: readonly string[]): Promise<{ storage: Storage; dir: string }> {
    const dir = await this.tempDir();
    const storage = await openStorage(path.join(dir, 'rollcall.db'));
    this.defer(() => storage.db.close());
    for (const id of devices) {
      await storage.devices.insert({ id, certSerial: `S${id}`, certNotAfter: 1, groupId: ROOT_GROUP_ID, placementReason: null, hostname: id, fingerprint: null, agentVersion: null, enrolledAt: 1, tokenId: null });
    }
    return { storage, dir };
  }

  /**
   * Runs an enrolled agent's reconnect loop in this process with short test
   * timings (50-200 ms backoff, 1 s interval, no port probes unless given);
   * stopped at cleanup. Returns it with its captured log lines.
   */
  async runAgent(agent: { readonly state: AgentState; readonly fingerprint: string }, extra: Partial<AgentRunOptions> = {}): Promise<{ running: RunningAgent; lines: LogLine[] }> {
    const { log, lines } = captureLogger();
    const running = await startAgent({
      state: agent.state,
      fingerprint: agent.fingerprint,
      backoff: { baseMs: 50, capMs: 200 },
      connectTimeoutMs: 2000,
      ackTimeoutMs: 3000,
      intervalOverrideSec: 1,
      log,
      random: () => 0.5,
      probe: async () => [],
      ...extra,
    });
    this.defer(() => running.stop());
    return { running, lines };
  }

  async tempDir(prefix = 'rollcall-test-'): Promise<string> {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), prefix));
    this.defer(() => fs.rm(dir, { recursive: true, force: true }));
    return dir;
  }

  /** Closes everything, newest first. */
  async cleanup(): Promise<void> {
    while (this.toClose.length > 0) {
      const fn = this.toClose.pop()!;
      await fn();
    }
  }

  /** Starts a server on 127.0.0.1 with ports 0, the test PKI and a temp data dir. */
  async startServer(
    overrides: Partial<Record<keyof ServerConfig, unknown>> = {},
    opts: { dataDir?: string; now?: () => number; resolveHost?: HostResolver; workerJournalFoldMs?: number } = {},
  ): Promise<TestServer> {
    const dataDir = opts.dataDir ?? (await this.tempDir('rollcall-data-'));
    const pkiDir = path.join(dataDir, 'pki');
    await fs.mkdir(pkiDir, { recursive: true });
    for (const f of ['ca.crt', 'ca.key', 'server.crt', 'server.key']) {
      const target = path.join(pkiDir, f);
      await fs.copyFile(path.join(testPkiDir(), f), target).catch(async (err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw err;
      });
    }
    const config = resolveServerConfig({ dataDir, listenHost: '127.0.0.1', agentPort: 0, consolePort: 0, synchronous: 'NORMAL', ...overrides });
    const { log, lines } = captureLogger();
    // Tests never leave loopback: public host names resolve only through the seam (by default, to nothing).
    const server = await buildServer(config, { log, now: opts.now, resolveHost: opts.resolveHost ?? noDns, workerJournalFoldMs: opts.workerJournalFoldMs });
    await server.start();
    const adminToken = (await server.createInitialAdminToken()) ?? (await server.storage.apiTokens.create('test-admin', Date.now())).secret;
    let closed = false;
    const close = async (): Promise<void> => {
      if (closed) return;
      closed = true;
      await server.close();
    };
    this.defer(close);
    return new TestServer(server, lines, adminToken, dataDir, close, this);
  }
}

/** A started server with helpers. */
export class TestServer {
  constructor(
    readonly server: RollcallServer,
    readonly logs: LogLine[],
    readonly adminToken: string,
    readonly dataDir: string,
    readonly close: () => Promise<void>,
    private readonly harness: Harness,
  ) {}

  get agentAddress(): string {
    return `127.0.0.1:${this.server.agentPort}`;
  }

  /** Calls the console API with the admin token (or another token). */
  async api<T = unknown>(method: 'GET' | 'POST' | 'DELETE', apiPath: string, body?: unknown, token: string | null = this.adminToken): Promise<{ status: number; body: T }> {
    const res = await requestJson({
      host: '127.0.0.1',
      port: this.server.consolePort,
      path: apiPath,
      method,
      body,
      ca: this.server.pki.ca.certPem,
      headers: token === null ? {} : { authorization: `Bearer ${token}` },
    });
    return { status: res.status, body: res.body as T };
  }

  /** Reads a device once every accepted check-in is written and folded into the devices table. */
  async storedDevice(deviceId: string) {
    await this.server.writer.flush();
    return (await this.server.storage.devices.get(deviceId))!;
  }

  /** Creates an enrollment token for a group path (created if missing). */
  async enrollmentToken(group = 'Customers/Test', extra: { ttlSec?: number; maxUses?: number } = {}): Promise<string> {
    await this.api('POST', '/api/v1/groups', { path: group });
    const res = await this.api<{ token: string }>('POST', '/api/v1/enrollment-tokens', { group, ...extra });
    if (res.status !== 201) throw new Error(`token creation failed: ${JSON.stringify(res.body)}`);
    return res.body.token;
  }

  /** Enrolls an agent state directory through the real enrollment route. */
  async enrollAgent(opts: { group?: string; token?: string; fingerprint?: string; hostname?: string } = {}): Promise<EnrolledAgent> {
    const stateDir = await this.harness.tempDir('rollcall-agent-');
    const state = new AgentState(stateDir);
    const token = opts.token ?? (await this.enrollmentToken(opts.group));
    const fingerprint = opts.fingerprint ?? 'a'.repeat(64);
    const identity = await enrollAgent({ servers: [this.agentAddress], caPin: this.server.pki.caPin, token, state, fingerprint, hostname: opts.hostname ?? 'test-host' });
    const creds = await state.loadCredentials();
    return { state, deviceId: identity.deviceId, fingerprint, keyPem: creds.keyPem, certPem: creds.certPem, caPem: creds.caPem };
  }

  /** Issues a certificate from the server's CA for a device that was never enrolled. */
  strayCertificate(deviceId = 'dev_stray'): { keyPem: string; certPem: string } {
    const keys = generateKeyPair(2048);
    const issued = issueClientCert(this.server.pki.ca, { publicKeyPem: keys.publicKeyPem, deviceId });
    return { keyPem: keys.privateKeyPem, certPem: issued.certPem };
  }

  /** Opens a raw check-in WebSocket with the given credentials (none: no client certificate). */
  async rawClient(creds: { keyPem?: string; certPem?: string } = {}, extra: { maxPayload?: number } = {}): Promise<RawClient> {
    const ws = new WebSocket(`wss://127.0.0.1:${this.server.agentPort}${CHECKIN_PATH}`, {
      ca: this.server.pki.ca.certPem,
      key: creds.keyPem,
      cert: creds.certPem,
      perMessageDeflate: false,
      handshakeTimeout: 5000,
      maxPayload: extra.maxPayload ?? 1024 * 1024,
    });
    const client = new RawClient(ws);
    this.harness.defer(() => client.terminate());
    return client;
  }
}

/** An enrolled agent's files. */
export interface EnrolledAgent {
  readonly state: AgentState;
  readonly deviceId: string;
  readonly fingerprint: string;
  readonly keyPem: string;
  readonly certPem: string;
  readonly caPem: string;
}

/** The outcome of a refused upgrade. */
export interface Refusal {
  readonly status: number;
  readonly closeCodeHeader: string | undefined;
  readonly body: { error?: { code?: string; message?: string } };
}

/** A check-in WebSocket driven by hand, for protocol and bad-input tests. */
export class RawClient {
  readonly messages: ServerMessage[] = [];
  private readonly waiters: (() => void)[] = [];
  closeInfo: { code: number; reason: string } | undefined;
  refusal: Refusal | undefined;
  error: Error | undefined;
  private readonly opened: Promise<void>;
  private readonly closed: Promise<void>;

  constructor(readonly ws: WebSocket) {
    this.opened = new Promise<void>((resolve) => ws.once('open', () => resolve()));
    this.closed = new Promise<void>((resolve) => {
      ws.once('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        this.wake();
        resolve();
      });
    });
    ws.on('message', (data) => {
      this.messages.push(JSON.parse(data.toString()) as ServerMessage);
      this.wake();
    });
    ws.on('error', (err) => {
      this.error = err;
      this.wake();
    });
    ws.on('unexpected-response', (_req, res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const header = res.headers['x-rollcall-close-code'];
        this.refusal = {
          status: res.statusCode ?? 0,
          closeCodeHeader: typeof header === 'string' ? header : undefined,
          body: JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Refusal['body'],
        };
        ws.terminate();
        this.wake();
      });
    });
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  private async until<T>(get: () => T | undefined, what: string, timeoutMs: number): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = get();
      if (v !== undefined) return v;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Resolves when open; rejects with the refusal or error if the upgrade failed. */
  async open(timeoutMs = 5000): Promise<void> {
    await Promise.race([
      this.opened,
      this.until(() => this.refusal ?? this.error ?? this.closeInfo, 'open', timeoutMs).then((why) => {
        throw new Error(`connection not opened: ${JSON.stringify(why)}`);
      }),
    ]);
  }

  /** Waits for the upgrade to be refused. */
  waitRefusal(timeoutMs = 5000): Promise<Refusal> {
    return this.until(() => this.refusal, 'a refused upgrade', timeoutMs);
  }

  /** Waits for the socket to fail before opening (TLS errors and the like). */
  waitError(timeoutMs = 5000): Promise<Error> {
    return this.until(() => this.error, 'a connection error', timeoutMs);
  }

  send(msg: AgentMessage | Record<string, unknown> | string): void {
    this.ws.send(typeof msg === 'string' ? msg : JSON.stringify(msg));
  }

  /** Sends a valid hello for the device. */
  hello(deviceId: string, extra: Partial<Record<string, unknown>> = {}): void {
    this.ws.send(
      encode({
        type: 'hello',
        protocol: PROTOCOL_VERSION,
        deviceId,
        agentVersion: 'test',
        hostname: 'test-host',
        fingerprint: 'a'.repeat(64),
        inventory: { os: 'Linux', release: '6', arch: 'x64', cpus: 2, memoryBytes: 1024 },
        lastSeq: 0,
        ...extra,
      } as AgentMessage),
    );
  }

  /** Waits for the next server message of a type. */
  waitMessage<T extends ServerMessage['type']>(type: T, timeoutMs = 5000, from = 0): Promise<Extract<ServerMessage, { type: T }>> {
    return this.until(() => this.messages.slice(from).find((m) => m.type === type) as Extract<ServerMessage, { type: T }> | undefined, `a "${type}" message`, timeoutMs);
  }

  /** Waits for the close frame. */
  async waitClose(timeoutMs = 5000): Promise<{ code: number; reason: string }> {
    return this.until(() => this.closeInfo, 'close', timeoutMs);
  }

  terminate(): void {
    this.ws.terminate();
  }

  /** A TLS socket to the agent port, for handshake-level tests. */
  static tlsSocket(port: number, opts: tls.ConnectionOptions): tls.TLSSocket {
    return tls.connect({ host: '127.0.0.1', port, ...opts });
  }
}
